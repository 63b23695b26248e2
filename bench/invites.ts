import { performance } from 'node:perf_hooks';

import { TIMED_OUT, withTimeout } from '../scripts/timeouts.js';
import type { DeliveryClock } from './deliveries.js';
import { ErrorTally, timedFetch } from './http.js';
import { measureResources, type ResourceUse } from './resources.js';
import { BENCH_ACCOUNT, type BenchStack } from './stack.js';
import { summarize, type Summary } from './stats.js';

/** Upper bound for one run of invites and their emails, whatever the count. */
const MAX_RUN_MS = 15 * 60_000;
/** How long to wait for the remaining emails once the last invite has its response. */
const EMAIL_WAIT_MS = 60_000;

export const INVITE_ROLES = ['customer_viewer'];

export interface BenchContext {
  stack: BenchStack;
  deliveries: DeliveryClock;
  /** Aborted on Ctrl-C, or when the Temporal server or the worker stops on its own. */
  signal: AbortSignal;
}

/** One invite that got its 202. */
export interface InviteRecord {
  email: string;
  workflowId: string;
  sentAtEpochMs: number;
  receivedAtEpochMs: number;
  /** `performance.now()` when the 202 had been read. */
  finishedAt: number;
}

export interface InviteRunResult {
  label: string;
  concurrency: number;
  requested: number;
  succeeded: number;
  errors: ErrorTally;
  /** From the first request sent to the last response read, in milliseconds. */
  wallMs: number;
  /** Successful invites divided by the wall time. */
  invitesPerSecond: number;
  /** Time to the 202, in milliseconds. */
  latency: Summary | undefined;
  /** Time from reading the 202 to the email reaching the fake SendGrid, in milliseconds. */
  emailDelay: Summary | undefined;
  /** Invites with a 202 whose email did not arrive within the wait. */
  emailsMissing: number;
  /** CPU and event-loop delay while the requests ran. */
  resources: ResourceUse;
  invites: InviteRecord[];
}

function invitationWorkflowIdOf(body: unknown): string | undefined {
  const invitation = (body as { invitation?: { workflowId?: unknown } } | null)?.invitation;
  return typeof invitation?.workflowId === 'string' ? invitation.workflowId : undefined;
}

/**
 * Sends `count` invites to new addresses from `concurrency` loops at once, and stamps when each
 * invitation email reaches the fake SendGrid. Non-202 responses and network errors are counted, not thrown.
 */
export async function runInvites(
  context: BenchContext,
  run: { label: string; count: number; concurrency: number },
): Promise<InviteRunResult> {
  const { stack, deliveries, signal } = context;
  const url = `${stack.baseUrl}/v1/accounts/${BENCH_ACCOUNT.id}/environments/${BENCH_ACCOUNT.environment}/users`;
  const headers = { authorization: `Bearer ${stack.adminKey}`, 'content-type': 'application/json' };

  const invites: InviteRecord[] = [];
  const latencies: number[] = [];
  const errors = new ErrorTally();
  let requestsDone = false;
  let stopWatching = false;
  const allEmailsArrived = () => invites.every((invite) => deliveries.arrivalOf(invite.email) !== undefined);
  const watching = deliveries
    .watch(() => stopWatching || (requestsDone && allEmailsArrived()), MAX_RUN_MS)
    .then(
      () => undefined,
      (error: unknown) => error as Error,
    );

  let next = 0;
  const sendInvites = async () => {
    while (next < run.count && !signal.aborted) {
      const email = `${run.label}-${next}@bench.example`;
      next += 1;
      try {
        const response = await timedFetch(url, { method: 'POST', headers, body: JSON.stringify({ email, roles: INVITE_ROLES }) }, signal);
        const workflowId = invitationWorkflowIdOf(response.body);
        if (response.status !== 202 || workflowId === undefined) {
          errors.add(`HTTP ${response.status}`, response.body);
          continue;
        }
        latencies.push(response.durationMs);
        invites.push({
          email,
          workflowId,
          sentAtEpochMs: response.sentAtEpochMs,
          receivedAtEpochMs: response.receivedAtEpochMs,
          finishedAt: response.finishedAt,
        });
      } catch (error) {
        if (signal.aborted) {
          return;
        }
        errors.add(`request failed: ${(error as Error).name}`, (error as Error).message);
      }
    }
  };

  const stopMeasuring = await measureResources(stack.cpuSources);
  const startedAt = performance.now();
  await Promise.all(Array.from({ length: run.concurrency }, sendInvites));
  const wallMs = performance.now() - startedAt;
  const resources = await stopMeasuring();
  requestsDone = true;

  const watchResult = await withTimeout(watching, EMAIL_WAIT_MS);
  if (watchResult === TIMED_OUT) {
    stopWatching = true;
    await watching;
  } else if (watchResult instanceof Error) {
    process.stderr.write(`${run.label}: waiting for emails failed: ${watchResult.message}\n`);
  }

  const emailDelays = invites
    .map((invite) => {
      const arrival = deliveries.arrivalOf(invite.email);
      return arrival === undefined ? undefined : arrival - invite.finishedAt;
    })
    .filter((delay): delay is number => delay !== undefined);

  return {
    label: run.label,
    concurrency: run.concurrency,
    requested: run.count,
    succeeded: invites.length,
    errors,
    wallMs,
    invitesPerSecond: invites.length / (wallMs / 1000),
    latency: summarize(latencies),
    emailDelay: summarize(emailDelays),
    emailsMissing: invites.length - emailDelays.length,
    resources,
    invites,
  };
}
