import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  defineQuery,
  defineUpdate,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  startChild,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';

import type { BatchRowCheck, BulkActivities, RecordedGroupInvitation } from '../activities/bulk.js';
import type { InvitationActivities } from '../activities/invitations.js';
import { invitationEndedSignal, invitationWorkflow, type InvitationTimingInput } from './invitation.js';
import { lifecycleSearchAttributes } from './search-attributes.js';
import { summarizeRoles, visibleEmail } from './visibility.js';

/**
 * Checks of an invitation workflow that has not recorded yet: the wait before the next check grows to
 * 5 s, and after this many checks (about 10 minutes) the invitation counts as failed.
 */
const MAX_RECORDING_CHECKS = 120;

function delayBeforeCheck(check: number): number {
  return Math.min(250 * 2 ** check, 5_000);
}

// ---------------------------------------------------------------------------------------------------
// Invitation to several environments
// ---------------------------------------------------------------------------------------------------

export interface InvitationGroupEnvironment {
  environment: string;
  environmentId: string;
  roles: string[];
  /** The id a single invite to this environment would use; the API computes it, because it is keyed with APP_SECRET. */
  invitationWorkflowId: string;
}

export interface InvitationGroupInput {
  accountId: string;
  email: string;
  invitedByUserId: string | null;
  timing: InvitationTimingInput;
  environments: InvitationGroupEnvironment[];
  /** Whether the invitations' summaries in the Temporal Web UI show the whole email address. */
  showEmails?: boolean;
}

export type InvitationGroupPhase = 'recording' | 'recorded' | 'emailed' | 'rejected' | 'email_rejected';

export interface InvitationGroupState {
  phase: InvitationGroupPhase;
  /** The recorded invitations, in the order of the input's environments. */
  invitations: RecordedGroupInvitation[];
  /** Why nothing was kept, when phase is `rejected`: the first environment that failed. */
  rejection: { type: string; message: string; environment: string } | null;
}

/** Returns the state once every invitation is recorded, or fails with the rejection; the API waits on it. */
export const invitationGroupRecordedUpdate = defineUpdate<InvitationGroupState>('invitationGroupRecorded');
export const invitationGroupStateQuery = defineQuery<InvitationGroupState>('invitationGroupState');

/** Failure types of the group that are not rejections of an invitation activity. */
export const InvitationGroupFailure = {
  /**
   * An invitation workflow for this person and environment is already running. The same type as the
   * invitation activity's pending-invitation rejection, so that the API maps both to one code.
   */
  invitationPending: 'InvitationPending',
  unexpected: 'InvitationGroupFailed',
} as const;

const groupActivities = proxyActivities<BulkActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 300 },
});
const { revokeInvitation } = proxyActivities<InvitationActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 300 },
});

interface StartedInvitation {
  child: ChildWorkflowHandle<typeof invitationWorkflow>;
  recorded: RecordedGroupInvitation;
}

/** Turns a failed start or recording into the rejection the API reports. */
function describeFailure(error: unknown, environment: string): NonNullable<InvitationGroupState['rejection']> {
  if (error instanceof WorkflowExecutionAlreadyStartedError) {
    return {
      type: InvitationGroupFailure.invitationPending,
      message: `This person already has a pending invitation to environment "${environment}".`,
      environment,
    };
  }
  if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure) {
    return { type: error.cause.type ?? InvitationGroupFailure.unexpected, message: error.cause.message, environment };
  }
  if (error instanceof ApplicationFailure) {
    return { type: error.type ?? InvitationGroupFailure.unexpected, message: error.message, environment };
  }
  return { type: InvitationGroupFailure.unexpected, message: (error as Error).message, environment };
}

/**
 * Invites one person to several environments of an account and mails them one email with a link per
 * environment.
 *
 * Each environment gets the standard invitation workflow as a child, under the id a single invite would
 * have, so resend and revoke per environment work through the usual routes. Children rather than an
 * activity that starts workflows: a child start is a command in this workflow's history, so a retried or
 * replayed step never starts a second invitation, and "already started" can only mean someone else's.
 * ParentClosePolicy ABANDON lets the invitations run on, for days, after this workflow ends.
 *
 * The children create their links without mailing them (`emailDelivery: 'deferred'`); this workflow then
 * sends one email built from each invitation's current link. If any environment is rejected, the
 * invitations already recorded are revoked, so nothing is left half-done.
 */
export async function invitationGroupWorkflow(input: InvitationGroupInput): Promise<InvitationGroupState> {
  const state: InvitationGroupState = { phase: 'recording', invitations: [], rejection: null };
  const names = input.environments.map((target) => target.environment).join(', ');
  const describe = () => setCurrentDetails(`**${state.phase}** · ${input.accountId} · ${names}`);

  setHandler(invitationGroupStateQuery, () => state);
  setHandler(invitationGroupRecordedUpdate, async () => {
    await condition(() => state.phase !== 'recording');
    if (state.phase === 'rejected' && state.rejection) {
      throw ApplicationFailure.create({
        type: state.rejection.type,
        message: state.rejection.message,
        details: [{ environment: state.rejection.environment }],
        nonRetryable: true,
      });
    }
    return state;
  });
  describe();

  const settled = await Promise.allSettled(input.environments.map((target) => startInvitation(input, target)));
  const started = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failedIndex = settled.findIndex((result) => result.status === 'rejected');

  if (failedIndex >= 0) {
    const failure = settled[failedIndex] as PromiseRejectedResult;
    state.rejection = describeFailure(failure.reason, input.environments[failedIndex]!.environment);
    await revokeAll(started, 'invitation_group_rejected');
    // The update reports the rejection only now, so a caller that gets 409 finds nothing left pending.
    state.phase = 'rejected';
    describe();
    await allHandlersFinished();
    log.info('Invitation group rejected', { type: state.rejection.type, environment: state.rejection.environment });
    return state;
  }

  state.invitations = started.map((invitation) => invitation.recorded);
  state.phase = 'recorded';
  describe();

  try {
    await groupActivities.sendInvitationGroupEmail({ invitationIds: state.invitations.map((invitation) => invitation.invitationId) });
    state.phase = 'emailed';
  } catch (error) {
    // As for a single invitation: links that no one received are ended, so the person can be invited again.
    if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.nonRetryable) {
      await revokeAll(started, 'email_rejected');
      state.phase = 'email_rejected';
    } else {
      throw error;
    }
  }
  describe();
  await allHandlersFinished();
  return state;
}

async function startInvitation(input: InvitationGroupInput, target: InvitationGroupEnvironment): Promise<StartedInvitation> {
  // startChild resolves once the child has started, or rejects with WorkflowExecutionAlreadyStartedError
  // when an invitation workflow with this id is running.
  const child = await startChild(invitationWorkflow, {
    workflowId: target.invitationWorkflowId,
    args: [
      {
        accountId: input.accountId,
        environmentId: target.environmentId,
        environment: target.environment,
        email: input.email,
        roles: target.roles,
        invitedByUserId: input.invitedByUserId,
        timing: input.timing,
        emailDelivery: 'deferred',
      },
    ],
    parentClosePolicy: 'ABANDON',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    staticSummary: `Invitation of ${visibleEmail(input.email, input.showEmails ?? false)} to ${input.accountId}/${target.environment} as ${summarizeRoles(target.roles)}`,
    typedSearchAttributes: lifecycleSearchAttributes({
      kind: 'invitation',
      accountId: input.accountId,
      environment: target.environment,
      memberStatus: 'invited',
    }),
  });
  // Each check returns within seconds; the waiting between checks is a timer here, so no activity slot
  // is held while the child waits for one.
  for (let check = 0; check < MAX_RECORDING_CHECKS; check += 1) {
    const result = await groupActivities.checkInvitationRecorded({ workflowId: child.workflowId, runId: child.firstExecutionRunId });
    if (result.phase === 'recorded') {
      return { child, recorded: { ...result.invitation, environment: target.environment, invitationWorkflowId: child.workflowId } };
    }
    await sleep(delayBeforeCheck(check));
  }
  // NOTE: the child may still record its invitation after this; compensation does not reach it then.
  throw ApplicationFailure.create({
    type: InvitationGroupFailure.unexpected,
    message: `The invitation to environment "${target.environment}" was not recorded in time.`,
    nonRetryable: true,
  });
}

/** Compensates a rejected group: revokes the recorded invitations and signals their workflows, which then end. */
async function revokeAll(started: StartedInvitation[], reason: string): Promise<void> {
  for (const { child, recorded } of started) {
    const result = await revokeInvitation({ invitationId: recorded.invitationId, actorUserId: null, reason });
    if (result.status === 'revoked') {
      await child.signal(invitationEndedSignal, { status: 'revoked' });
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Bulk onboarding
// ---------------------------------------------------------------------------------------------------

export interface BatchInvitationInput {
  batchId: string;
  accountId: string;
  environment: string;
  /** Invitation workflows started at the same time: BATCH_CONCURRENCY when the batch was submitted. */
  concurrency: number;
}

export interface BatchProgress {
  total: number;
  done: number;
}

export type BatchRowStatus = 'queued' | 'invited' | 'already_member' | 'invalid' | 'failed';

export type BatchCounts = Record<BatchRowStatus, number> & { total: number };

export const batchProgressQuery = defineQuery<BatchProgress>('batchProgress');

/** Returns the batch workflow id, which is readable, deterministic and free of email addresses. */
export function batchWorkflowId(accountId: string, environment: string, batchId: string): string {
  return `batch-${accountId}-${environment}-${batchId}`;
}

const batchActivities = proxyActivities<BulkActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 300 },
});
const { inviteBatchRow } = proxyActivities<BulkActivities>({
  startToCloseTimeout: '30s',
  // About a quarter of an hour of retries: a row that keeps failing is marked `failed` rather than
  // holding up the rest of the batch for a day.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 20 },
});

/**
 * Invites the queued rows of a batch that the API stored, `concurrency` rows at a time. The input is the
 * batch id, so history contains row numbers and statuses but no addresses. A row that fails ends
 * `failed` and the others go on. History grows by about four events per row (1,799 events for the 460
 * queued rows of the 500-row test), so 1,000 rows stay far below Temporal's 50,000-event limit.
 */
export async function batchInvitationWorkflow(input: BatchInvitationInput): Promise<BatchCounts> {
  const progress: BatchProgress = { total: 0, done: 0 };
  const describe = () =>
    setCurrentDetails(`**${progress.done}/${progress.total} done** · ${input.accountId}/${input.environment} · batch ${input.batchId}`);
  setHandler(batchProgressQuery, () => progress);

  const { total, queuedRows } = await batchActivities.listQueuedBatchRows({ batchId: input.batchId });
  progress.total = total;
  progress.done = total - queuedRows.length;
  describe();

  // A small pool: each runner takes the next row number until none is left.
  let next = 0;
  const runner = async () => {
    while (next < queuedRows.length) {
      const rowNumber = queuedRows[next]!;
      next += 1;
      await inviteRow(input.batchId, rowNumber);
      progress.done += 1;
      describe();
    }
  };
  const runners = Math.max(1, Math.min(input.concurrency, queuedRows.length));
  await Promise.all(Array.from({ length: runners }, runner));

  const counts = await batchActivities.completeBatch({ batchId: input.batchId });
  describe();
  log.info('Batch completed', { batchId: input.batchId, ...counts });
  return counts;
}

/**
 * Invites one row. The activity starts the invitation workflow and settles the row once the invitation
 * is recorded or rejected. Until then it returns `recording`, and a timer here spaces the next check.
 */
async function inviteRow(batchId: string, rowNumber: number): Promise<void> {
  let runId: string | undefined;
  for (let check = 0; check < MAX_RECORDING_CHECKS; check += 1) {
    let result: BatchRowCheck;
    try {
      result = await inviteBatchRow({ batchId, rowNumber, ...(runId ? { runId } : {}) });
    } catch (error) {
      if (!(error instanceof ActivityFailure)) {
        throw error;
      }
      await batchActivities.failBatchRow({ batchId, rowNumber, reason: error.cause?.message ?? error.message });
      return;
    }
    if (result.status !== 'recording') {
      return;
    }
    runId = result.runId;
    await sleep(delayBeforeCheck(check));
  }
  // NOTE: the invitation workflow may still record the invitation later, while the row shows `failed`.
  await batchActivities.failBatchRow({ batchId, rowNumber, reason: 'The invitation was not recorded within about 10 minutes.' });
}
