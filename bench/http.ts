import { performance } from 'node:perf_hooks';

/** Upper bound for one request, so that a stuck request cannot hold the run open. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface TimedResponse {
  status: number;
  /** The parsed JSON body, or the text when the body is not JSON. */
  body: unknown;
  /** Time from sending the request to having read the whole response, in milliseconds. */
  durationMs: number;
  /** `performance.now()` when the whole response had been read. */
  finishedAt: number;
  /** `Date.now()` when the request was sent and when the response had been read, for comparing with server timestamps. */
  sentAtEpochMs: number;
  receivedAtEpochMs: number;
}

/**
 * Sends one request with node's fetch and times it up to the last byte of the body. Throws when the
 * request fails at the network level, times out after 30 s, or `signal` is aborted.
 */
export async function timedFetch(url: string, init: RequestInit, signal: AbortSignal): Promise<TimedResponse> {
  const sentAtEpochMs = Date.now();
  const startedAt = performance.now();
  const response = await fetch(url, { ...init, signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) });
  const text = await response.text();
  const finishedAt = performance.now();
  const receivedAtEpochMs = Date.now();

  let body: unknown = text;
  if (response.headers.get('content-type')?.includes('application/json')) {
    body = JSON.parse(text);
  }
  return { status: response.status, body, durationMs: finishedAt - startedAt, finishedAt, sentAtEpochMs, receivedAtEpochMs };
}

/** Counts unexpected responses by status, keeping the first body of each for the report. */
export class ErrorTally {
  readonly byStatus = new Map<string, { count: number; firstBody: string }>();

  add(status: string, body: unknown): void {
    const entry = this.byStatus.get(status);
    if (entry) {
      entry.count += 1;
      return;
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    this.byStatus.set(status, { count: 1, firstBody: text.slice(0, 300) });
  }

  get total(): number {
    return [...this.byStatus.values()].reduce((sum, entry) => sum + entry.count, 0);
  }

  toJSON(): Record<string, { count: number; firstBody: string }> {
    return Object.fromEntries(this.byStatus);
  }
}
