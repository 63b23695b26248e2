import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import { ErrorTally, timedFetch } from './http.js';
import { INVITE_ROLES, type BenchContext } from './invites.js';
import { measureResources, readResidentMemory, type ResourceUse } from './resources.js';
import { BENCH_ACCOUNT } from './stack.js';

/** The batch endpoint takes at most this many rows per request. */
const ROWS_PER_BATCH = 1_000;
const POLL_INTERVAL_MS = 2_000;
/** Upper bound for the bulk onboarding and for the revocations, each, generous because a shared machine may be slow. */
const MAX_WAIT_MS = 30 * 60_000;
const REVOKE_CONCURRENCY = 16;
/** How long the worker gets to let go of closed workflows before its memory is read again. */
const SETTLE_MS = 5_000;

export interface WorkerMemory {
  rssMiB: number | undefined;
  peakRssMiB: number | undefined;
  /** Invitation workflows still running according to Temporal, when the memory was read. */
  openInvitationWorkflows: number;
}

export interface BulkResult {
  invitations: number;
  batches: number;
  /** From the first batch request to the last invitation email, in seconds. */
  wallSeconds: number;
  /** Rows the batches reported as invited, and as anything else. */
  invited: number;
  notInvited: Record<string, number>;
  /** Addresses without a pending invitation in the database, or without an email. */
  lost: { invitations: number; emails: number };
  /** Addresses with more than one invitation, or more than one invitation email. */
  duplicated: { invitations: number; emails: number };
  errors: ErrorTally;
  resources: ResourceUse;
  memory: {
    /** Right after the worker started, before any invitation. */
    idle: WorkerMemory;
    withOpenWorkflows: WorkerMemory;
    afterCompletion: WorkerMemory;
  };
  /** The revocations that end the bulk invitations, so that "after completion" can be measured. */
  revoke: { count: number; errors: number; wallSeconds: number };
}

interface BatchBody {
  status: string;
  counts: Record<string, number>;
  rows: { email: string; status: string; userId: string | null }[];
}

async function countOpenInvitationWorkflows(context: BenchContext): Promise<number> {
  const { count } = await context.stack.temporal.workflow.count('WorkflowType = "invitationWorkflow" AND ExecutionStatus = "Running"');
  return count;
}

/** Reads the worker's resident memory together with the number of open invitation workflows. */
export async function readWorkerMemory(context: BenchContext): Promise<WorkerMemory> {
  const memory = readResidentMemory(context.stack.workerPid);
  return { rssMiB: memory?.rssMiB, peakRssMiB: memory?.peakRssMiB, openInvitationWorkflows: await countOpenInvitationWorkflows(context) };
}

/** Polls `check` every two seconds until it returns true; throws after `MAX_WAIT_MS`. */
async function waitUntil(what: string, signal: AbortSignal, check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + MAX_WAIT_MS;
  while (!(await check())) {
    signal.throwIfAborted();
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${MAX_WAIT_MS / 60_000} minutes waiting for ${what}.`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/**
 * Invites `count` people through the batch endpoint, checks that each got exactly one invitation and
 * one email, and reads the worker's memory while their workflows wait on their timers. It then revokes
 * every one of them through the API and reads the memory again once the workflows have closed.
 */
export async function runBulk(
  context: BenchContext,
  input: { count: number; idleMemory: WorkerMemory; progress: (message: string) => void },
): Promise<BulkResult> {
  const { stack, deliveries, signal } = context;
  const environmentUrl = `${stack.baseUrl}/v1/accounts/${BENCH_ACCOUNT.id}/environments/${BENCH_ACCOUNT.environment}`;
  const headers = { authorization: `Bearer ${stack.adminKey}`, 'content-type': 'application/json' };
  const errors = new ErrorTally();
  const emails = Array.from({ length: input.count }, (_, index) => `bulk-${String(index).padStart(6, '0')}@bench.example`);

  input.progress(`bulk onboarding: ${input.count} invitations in batches of ${ROWS_PER_BATCH}`);
  const openBefore = await countOpenInvitationWorkflows(context);
  const stopMeasuring = await measureResources(stack.cpuSources);
  const startedAt = performance.now();
  const batchIds: string[] = [];
  for (let first = 0; first < emails.length; first += ROWS_PER_BATCH) {
    const rows = emails.slice(first, first + ROWS_PER_BATCH).map((email) => ({ email, roles: INVITE_ROLES }));
    const response = await timedFetch(`${environmentUrl}/users:batch`, { method: 'POST', headers, body: JSON.stringify({ rows }) }, signal);
    if (response.status !== 202) {
      errors.add(`batch HTTP ${response.status}`, response.body);
      continue;
    }
    batchIds.push((response.body as { batchId: string }).batchId);
  }

  const readBatch = async (batchId: string, status?: string): Promise<BatchBody> => {
    const query = status === undefined ? '' : `?status=${status}`;
    const response = await timedFetch(`${environmentUrl}/batches/${batchId}${query}`, { headers }, signal);
    if (response.status !== 200) {
      throw new Error(`Reading batch ${batchId} failed with HTTP ${response.status}: ${JSON.stringify(response.body)}`);
    }
    return response.body as BatchBody;
  };
  await waitUntil('the batches to complete', signal, async () => {
    const batches = await Promise.all(batchIds.map((batchId) => readBatch(batchId, 'failed')));
    return batches.every((batch) => batch.status === 'completed');
  });
  await deliveries.watch(() => signal.aborted || emails.every((email) => deliveries.arrivalOf(email) !== undefined), MAX_WAIT_MS);
  signal.throwIfAborted();
  const lastEmail = Math.max(...emails.map((email) => deliveries.arrivalOf(email) ?? 0));
  const resources = await stopMeasuring();

  const batches = await Promise.all(batchIds.map((batchId) => readBatch(batchId)));
  const notInvited: Record<string, number> = {};
  const invitedUserIds: string[] = [];
  for (const row of batches.flatMap((batch) => batch.rows)) {
    if (row.status === 'invited' && row.userId) {
      invitedUserIds.push(row.userId);
    } else {
      notInvited[row.status] = (notInvited[row.status] ?? 0) + 1;
    }
  }

  // Each address must have exactly one invitation, still pending, and exactly one invitation email.
  const invitationCounts: { email_normalized: string; count: string; pending: string }[] = await stack.db('invitations')
    .where({ environment_id: stack.environmentId })
    .whereIn('email_normalized', emails)
    .groupBy('email_normalized')
    .select('email_normalized', stack.db.raw("count(*) FILTER (WHERE status = 'pending') AS pending"))
    .count({ count: '*' });
  const emailCounts = emails.map((email) => stack.sendgrid.deliveredTo(email).length);

  const withOpenWorkflows = await readWorkerMemory(context);

  input.progress(`bulk onboarding: revoking the ${invitedUserIds.length} invitations, ${REVOKE_CONCURRENCY} at a time`);
  const revokeStartedAt = performance.now();
  let revokeErrors = 0;
  let next = 0;
  const revokeLoop = async () => {
    while (next < invitedUserIds.length && !signal.aborted) {
      const userId = invitedUserIds[next]!;
      next += 1;
      const response = await timedFetch(`${environmentUrl}/users/${userId}/invitation/revoke`, { method: 'POST', headers }, signal);
      if (response.status !== 200) {
        revokeErrors += 1;
        errors.add(`revoke HTTP ${response.status}`, response.body);
      }
    }
  };
  await Promise.all(Array.from({ length: REVOKE_CONCURRENCY }, revokeLoop));
  await waitUntil('the invitation workflows to close', signal, async () => (await countOpenInvitationWorkflows(context)) <= openBefore);
  const revokeSeconds = (performance.now() - revokeStartedAt) / 1000;
  await sleep(SETTLE_MS);

  return {
    invitations: input.count,
    batches: batchIds.length,
    wallSeconds: (lastEmail - startedAt) / 1000,
    invited: invitedUserIds.length,
    notInvited,
    lost: {
      invitations: emails.length - invitationCounts.filter((row) => Number(row.pending) === 1).length,
      emails: emailCounts.filter((count) => count === 0).length,
    },
    duplicated: {
      invitations: invitationCounts.filter((row) => Number(row.count) > 1).length,
      emails: emailCounts.filter((count) => count > 1).length,
    },
    errors,
    resources,
    memory: { idle: input.idleMemory, withOpenWorkflows, afterCompletion: await readWorkerMemory(context) },
    revoke: { count: invitedUserIds.length, errors: revokeErrors, wallSeconds: revokeSeconds },
  };
}
