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
  /** `performance.now()` when the request was sent, and when the 202 had been read. */
  startedAt: number;
  finishedAt: number;
}

export interface InviteRunResult {
  label: string;
  concurrency: number;
  /** Requests sent. A run with a duration sends as many as fit into it. */
  requested: number;
  succeeded: number;
  errors: ErrorTally;
  /** From the first request sent to the last response read, in milliseconds. */
  wallMs: number;
  /** Successful invites divided by the wall time. */
  invitesPerSecond: number;
  /**
   * Invitations whose email reached the fake SendGrid, divided by the time from the first request
   * sent to the last such email: the end-to-end rate.
   */
  invitationsToEmailPerSecond: number;
  /** Time to the 202, in milliseconds. */
  latency: Summary | undefined;
  /** Time from reading the 202 to the email reaching the fake SendGrid, in milliseconds. */
  emailDelay: Summary | undefined;
  /** Time from sending the POST to the email reaching the fake SendGrid, in milliseconds. */
  inviteToEmail: Summary | undefined;
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
 * Sends invites to new addresses from `concurrency` loops at once, `count` of them or, with
 * `durationMs`, as many as the loops send in that time. Stamps when each invitation email reaches the
 * fake SendGrid. Non-202 responses and network errors are counted, not thrown.
 */
export async function runInvites(
  context: BenchContext,
  run: { label: string; concurrency: number } & ({ count: number } | { durationMs: number }),
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
  let deadline = Number.POSITIVE_INFINITY;
  const hasMore = () => ('count' in run ? next < run.count : performance.now() < deadline);
  const sendInvites = async () => {
    while (hasMore() && !signal.aborted) {
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
          startedAt: response.finishedAt - response.durationMs,
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
  if ('durationMs' in run) {
    deadline = startedAt + run.durationMs;
  }
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

  const delivered = invites.flatMap((invite) => {
    const arrival = deliveries.arrivalOf(invite.email);
    return arrival === undefined ? [] : [{ invite, arrival }];
  });
  const emailDelays = delivered.map(({ invite, arrival }) => arrival - invite.finishedAt);
  const lastArrival = Math.max(...delivered.map(({ arrival }) => arrival));

  return {
    label: run.label,
    concurrency: run.concurrency,
    requested: next,
    succeeded: invites.length,
    errors,
    wallMs,
    invitesPerSecond: invites.length / (wallMs / 1000),
    invitationsToEmailPerSecond: delivered.length === 0 ? 0 : delivered.length / ((lastArrival - startedAt) / 1000),
    latency: summarize(latencies),
    emailDelay: summarize(emailDelays),
    inviteToEmail: summarize(delivered.map(({ invite, arrival }) => arrival - invite.startedAt)),
    emailsMissing: invites.length - emailDelays.length,
    resources,
    invites,
  };
}
