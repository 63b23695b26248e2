import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { WithStartWorkflowOperation, WorkflowExecutionAlreadyStartedError, WorkflowUpdateFailedError } from '@temporalio/client';

import { invitationSummary, invitationWorkflowId } from '../api/invitation-workflows.js';
import { recordAuditEvent } from '../db/audit.js';
import { normalizeEmail } from '../lib/email-address.js';
import { PermanentEmailError } from '../lib/email/index.js';
import { invitationGroupEmail, type InvitationGroupLink } from '../lib/email/templates-bulk.js';
import { lifecycleSearchAttributes } from '../workflows/search-attributes.js';
import { deriveKey, deriveLinkToken } from '../lib/secrets.js';
import type { BatchCounts, BatchRowStatus } from '../workflows/bulk.js';
import { invitationRecordedUpdate, invitationStateQuery, invitationWorkflow } from '../workflows/invitation.js';
import type { ActivityDependencies } from './dependencies.js';
import { InvitationRejection } from './invitations.js';
import { currentWorkflow, reject } from './support.js';

/** One invitation of a group, as the group workflow and the API report it. */
export interface RecordedGroupInvitation {
  environment: string;
  invitationWorkflowId: string;
  invitationId: string;
  membershipId: string;
  userId: string;
  expiresAt: string;
}

/** Result of one check of a child invitation workflow; `recording` means "check again shortly". */
export type InvitationCheck =
  | { phase: 'recording' }
  | { phase: 'recorded'; invitation: Omit<RecordedGroupInvitation, 'environment' | 'invitationWorkflowId'> };

/** Result of one batch row call; `recording` means its invitation workflow has not recorded yet. */
export type BatchRowCheck = { status: Exclude<BatchRowStatus, 'queued'> } | { status: 'recording'; runId?: string };

/** Failure types of bulk activities that no retry can fix. */
export const BulkRejection = {
  batchRowNotFound: 'BatchRowNotFound',
  invitationRejected: 'InvitationRejected',
  emailRejected: InvitationRejection.emailRejected,
} as const;

/**
 * How long one check polls the database for an invitation workflow's first steps; one state query
 * follows, then the check returns. Checks do not block until the invitation is recorded, because
 * activities that blocked on another workflow's activity could take every activity slot of the
 * worker and leave none for that activity.
 */
const RECORD_WAIT_MS = 1_500;
const RECORD_POLL_MS = 100;
/** How long a batch row's activity waits for the result of its new invitation workflow's recording. */
const START_WAIT_MS = 10_000;
/** Maximum length of the failure reason stored on a batch row. */
const MAX_REASON_LENGTH = 500;

const ROW_REASONS = {
  alreadyMember: 'This person is already an active member of this environment.',
  deactivated: 'This person is a deactivated member of this environment; reactivate the membership instead of inviting again.',
  pending: 'This person already has a pending invitation to this environment.',
} as const;

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** The fields of a batch row and its batch that the row's invitation workflow needs. */
interface BatchRowInvitation {
  email: string;
  roles: string[];
  accountId: string;
  environmentId: string;
  environment: string;
  invitedByUserId: string | null;
}

type RunVerdict =
  | { phase: 'recording' }
  | { phase: 'recorded'; invitationId: string }
  | { phase: 'rejected'; type: string; message: string };

/** Builds the bulk onboarding and invitation-group activities; the worker calls this once. */
export function createBulkActivities({ config, db, email, tokenKey, temporal }: ActivityDependencies) {
  const idKey = deriveKey(config.appSecret, 'workflow-id');

  function acceptLink(invitationId: string, salt: Buffer): string {
    const token = deriveLinkToken(tokenKey, invitationId, salt);
    return `${config.appBaseUrl}/invitations/accept?token=${encodeURIComponent(token)}`;
  }

  /**
   * Reads how far one invitation workflow run has got. The database shows a recorded invitation at
   * once, so the check polls there briefly. For a run without one, the state query distinguishes a run
   * still recording from one that rejected the invitation, and returns the reason.
   */
  async function inspectInvitationRun(workflowId: string, runId: string, needsLink: boolean): Promise<RunVerdict> {
    const deadline = Date.now() + RECORD_WAIT_MS;
    for (;;) {
      const recorded = await db('invitations').where({ workflow_run_id: runId }).first('id', 'status');
      // A group's email needs the link that the child's deferred `initial` step creates after recording.
      const linkReady =
        recorded &&
        (!needsLink ||
          recorded.status !== 'pending' ||
          (await db('invitation_emails').where({ invitation_id: recorded.id, step: 'initial', status: 'sent' }).first('id')));
      if (linkReady) {
        return { phase: 'recorded', invitationId: recorded.id };
      }
      if (Date.now() >= deadline) {
        break;
      }
      Context.current().heartbeat();
      await sleep(RECORD_POLL_MS);
    }

    const state = await temporal.workflow.getHandle(workflowId, runId).query(invitationStateQuery);
    if (state.phase === 'rejected') {
      return {
        phase: 'rejected',
        type: state.rejection?.type ?? BulkRejection.invitationRejected,
        message: state.rejection?.message ?? 'The invitation workflow rejected the invitation.',
      };
    }
    if (state.phase === 'recording' || (needsLink && state.phase === 'pending')) {
      return { phase: 'recording' };
    }
    return { phase: 'recorded', invitationId: state.invitationId! };
  }

  /**
   * Checks a child invitation workflow of a group once: `recorded` with the invitation once it exists
   * and has its link, `recording` before. Throws a non-retryable failure with the invitation's
   * rejection type, such as AlreadyMember, when the child rejected it.
   */
  async function checkInvitationRecorded(input: { workflowId: string; runId: string }): Promise<InvitationCheck> {
    const verdict = await inspectInvitationRun(input.workflowId, input.runId, true);
    if (verdict.phase === 'rejected') {
      throw reject(verdict.type, verdict.message);
    }
    if (verdict.phase === 'recording') {
      return { phase: 'recording' };
    }
    const row = await db('invitations')
      .join('memberships', 'memberships.id', 'invitations.membership_id')
      .where('invitations.id', verdict.invitationId)
      .first('invitations.id', 'invitations.membership_id', 'memberships.user_id', 'invitations.expires_at');
    return {
      phase: 'recorded',
      invitation: {
        invitationId: row.id,
        membershipId: row.membership_id,
        userId: row.user_id,
        expiresAt: new Date(row.expires_at).toISOString(),
      },
    };
  }

  /**
   * Sends the one email of an invitation group, with the current link of each invitation that is still
   * pending. The first attempt stores a row keyed by the workflow run. A retry finds it and mails the
   * same links again, or nothing if the earlier attempt finished. Returns whether an email went out.
   */
  async function sendInvitationGroupEmail(input: { invitationIds: string[] }): Promise<{ sent: boolean }> {
    const { workflowId, runId } = currentWorkflow();

    const prepared = await db.transaction(async (trx) => {
      const existing = await trx('invitation_group_emails').where({ workflow_run_id: runId }).forUpdate().first();
      if (existing?.status === 'sent') {
        return undefined;
      }

      const invitations = await trx('invitations')
        .join('memberships', 'memberships.id', 'invitations.membership_id')
        .join('users', 'users.id', 'memberships.user_id')
        .join('environments', 'environments.id', 'invitations.environment_id')
        .join('accounts', 'accounts.id', 'memberships.account_id')
        .leftJoin('users as inviter', 'inviter.id', 'invitations.invited_by_user_id')
        .whereIn('invitations.id', input.invitationIds)
        .select(
          'invitations.id',
          'invitations.status',
          'invitations.expires_at',
          'invitations.environment_id',
          'users.id as userId',
          'users.email',
          'environments.name as environment',
          'accounts.id as accountId',
          'accounts.name as accountName',
          'inviter.email as invitedBy',
        );
      // The email lists the environments in the order the caller gave them.
      const byId = new Map(invitations.map((invitation) => [invitation.id as string, invitation]));
      const pending = input.invitationIds.map((id) => byId.get(id)).filter((invitation) => invitation?.status === 'pending');

      const links: InvitationGroupLink[] = [];
      for (const invitation of pending) {
        // The current link is the latest invitation or resend email's; a resend since then replaced the first.
        const current = await trx('invitation_emails')
          .where({ invitation_id: invitation.id })
          .whereIn('kind', ['invitation', 'resend'])
          .orderBy('created_at', 'desc')
          .first('token_salt');
        if (!current) {
          throw ApplicationFailure.create({ type: 'InvitationLinkNotReady', message: `Invitation ${invitation.id} has no link yet.` });
        }
        links.push({ environment: invitation.environment, link: acceptLink(invitation.id, current.token_salt), expiresAt: new Date(invitation.expires_at) });
      }
      if (pending.length === 0) {
        return { links, first: undefined, rowId: undefined };
      }

      let rowId: string = existing?.id;
      if (!existing) {
        [{ id: rowId }] = await trx('invitation_group_emails')
          .insert({
            workflow_id: workflowId,
            workflow_run_id: runId,
            user_id: pending[0].userId,
            invitation_ids: pending.map((invitation) => invitation.id),
            status: 'sending',
          })
          .returning('id');
      }
      return { links, first: pending[0], rowId };
    });

    if (!prepared) {
      return { sent: true };
    }
    if (!prepared.first) {
      log.info('Invitation group email skipped: no invitation is pending any more', { invitationIds: input.invitationIds });
      return { sent: false };
    }

    const message = invitationGroupEmail({
      to: prepared.first.email,
      accountName: prepared.first.accountName,
      invitedBy: prepared.first.invitedBy ?? null,
      invitations: prepared.links,
    });
    let messageId: string | null;
    try {
      ({ messageId } = await email.send(message));
    } catch (error) {
      if (error instanceof PermanentEmailError) {
        throw reject(BulkRejection.emailRejected, error.message);
      }
      throw error;
    }

    const environments = prepared.links.map((link) => link.environment);
    await db.transaction(async (trx) => {
      await trx('invitation_group_emails')
        .where({ id: prepared.rowId })
        .update({ status: 'sent', sent_at: trx.fn.now(), provider_message_id: messageId });
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: 'invitation_group.emailed',
        targetUserId: prepared.first.userId,
        accountId: prepared.first.accountId,
        environmentId: null,
        workflowId,
        details: { invitationIds: input.invitationIds, environments },
        eventKey: `invitation_group.emailed:${runId}`,
      });
    });
    log.info('Invitation group email sent', { invitationIds: input.invitationIds, messageId });
    return { sent: true };
  }

  /** Returns the row numbers of a batch that still wait for an invitation, in order. */
  async function listQueuedBatchRows(input: { batchId: string }): Promise<{ total: number; queuedRows: number[] }> {
    const batch = await db('batches').where({ id: input.batchId }).first('total_rows');
    if (!batch) {
      // The API starts the workflow just before it commits the batch, so a first attempt can come too
      // early. A retry finds the committed rows.
      throw ApplicationFailure.create({ type: 'BatchNotFound', message: `Batch ${input.batchId} is not in the database (yet).` });
    }
    const queuedRows = await db('batch_rows').where({ batch_id: input.batchId, status: 'queued' }).orderBy('row_number').pluck('row_number');
    return { total: batch.total_rows, queuedRows };
  }

  async function settleRow(
    key: { batchId: string; rowNumber: number },
    status: Exclude<BatchRowStatus, 'queued'>,
    result: { reason?: string | null; userId?: string | null; invitationId?: string | null },
  ): Promise<BatchRowCheck> {
    await db('batch_rows')
      .where({ batch_id: key.batchId, row_number: key.rowNumber, status: 'queued' })
      .update({
        status,
        error: result.reason ? result.reason.slice(0, MAX_REASON_LENGTH) : null,
        user_id: result.userId ?? null,
        invitation_id: result.invitationId ?? null,
        updated_at: db.fn.now(),
      });
    const row = await db('batch_rows').where({ batch_id: key.batchId, row_number: key.rowNumber }).first('status');
    return { status: row.status };
  }

  /** Finds the invitation this batch made for the row's person, if an earlier call already made it. */
  async function findOwnInvitation(batchId: string, environmentId: string, address: string) {
    return db('invitations')
      .join('memberships', 'memberships.id', 'invitations.membership_id')
      .where({ 'invitations.batch_id': batchId, 'invitations.environment_id': environmentId })
      .where('invitations.email_normalized', normalizeEmail(address))
      .orderBy('invitations.created_at', 'desc')
      .first('invitations.id', 'memberships.user_id');
  }

  /**
   * Starts a row's invitation workflow with its invitationRecorded update (Update-with-Start, as the
   * API's invite does) and waits at most START_WAIT_MS for its result. The workflow records the
   * invitation in a local activity, so the wait occupies no activity slot that the recording needs. Returns the
   * recorded invitation or the rejection when the update returned in time, and otherwise the run id to
   * check. A workflow that is already running, from an earlier attempt of this activity or from someone
   * else's invite, gives its run id.
   */
  async function startInvitation(
    workflowId: string,
    row: BatchRowInvitation,
    batchId: string,
  ): Promise<{ runId: string } | { verdict: Extract<RunVerdict, { phase: 'rejected' }> } | { invitationId: string; userId: string }> {
    const startWorkflowOperation = new WithStartWorkflowOperation(invitationWorkflow, {
      workflowId,
      taskQueue: config.temporal.taskQueue,
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `${invitationSummary(row, config.temporal.showEmails)} (batch ${batchId})`,
      typedSearchAttributes: lifecycleSearchAttributes({
        kind: 'invitation',
        accountId: row.accountId,
        environment: row.environment,
        memberStatus: 'invited',
      }),
      args: [
        {
          accountId: row.accountId,
          environmentId: row.environmentId,
          environment: row.environment,
          email: row.email,
          roles: row.roles,
          invitedByUserId: row.invitedByUserId,
          timing: config.invitation,
          batchId,
        },
      ],
    });
    const answer = temporal.workflow.executeUpdateWithStart(invitationRecordedUpdate, { startWorkflowOperation }).then(
      (state) => ({ state }),
      (error: unknown) => ({ error }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, START_WAIT_MS, undefined);
    });
    const outcome = await Promise.race([answer, timeout]).finally(() => clearTimeout(timer));
    const runningRunId = async () => (await temporal.workflow.getHandle(workflowId).describe()).runId;

    // Timed out: the update's request ends by itself, and the caller reads the run's progress instead.
    if (outcome === undefined) {
      return { runId: await runningRunId() };
    }
    if ('error' in outcome) {
      if (outcome.error instanceof WorkflowExecutionAlreadyStartedError) {
        return { runId: await runningRunId() };
      }
      const cause = outcome.error instanceof WorkflowUpdateFailedError ? outcome.error.cause : undefined;
      if (!(cause instanceof ApplicationFailure)) {
        throw outcome.error;
      }
      return { verdict: { phase: 'rejected', type: cause.type ?? BulkRejection.invitationRejected, message: cause.message } };
    }
    // The conflict policy FAIL means this call started the run, so the invitation is this batch's.
    return { invitationId: outcome.state.invitationId!, userId: outcome.state.userId! };
  }

  /**
   * Invites the person of one batch row: starts their invitation workflow, carrying the batch id, and
   * records the outcome on the row once the workflow has recorded or rejected the invitation. Returns
   * `recording` with the run id when it has not yet, and the batch workflow calls again a little later
   * with that run id.
   *
   * Safe to retry. A row that is no longer queued is left as it is. When the start finds the invitation
   * workflow already running, the invitation's batch_id shows whether an earlier attempt made it
   * (`invited`) or someone else did (`already_member`).
   */
  async function inviteBatchRow(input: { batchId: string; rowNumber: number; runId?: string }): Promise<BatchRowCheck> {
    const row = await db('batch_rows')
      .join('batches', 'batches.id', 'batch_rows.batch_id')
      .join('environments', 'environments.id', 'batches.environment_id')
      .where({ 'batch_rows.batch_id': input.batchId, 'batch_rows.row_number': input.rowNumber })
      .first(
        'batch_rows.status',
        'batch_rows.email',
        'batch_rows.roles',
        'batches.account_id as accountId',
        'batches.environment_id as environmentId',
        'batches.created_by_user_id as invitedByUserId',
        'environments.name as environment',
      );
    if (!row) {
      throw reject(BulkRejection.batchRowNotFound, `Batch ${input.batchId} has no row ${input.rowNumber}.`);
    }
    if (row.status !== 'queued') {
      return { status: row.status };
    }
    const key = { batchId: input.batchId, rowNumber: input.rowNumber };
    const own = await findOwnInvitation(input.batchId, row.environmentId, row.email);
    if (own) {
      return settleRow(key, 'invited', { userId: own.user_id, invitationId: own.id });
    }

    const workflowId = invitationWorkflowId(idKey, row.accountId, row.environment, row.email);
    const started = input.runId ? { runId: input.runId } : await startInvitation(workflowId, row, input.batchId);
    if ('runId' in started) {
      const verdict = await inspectInvitationRun(workflowId, started.runId, false);
      if (verdict.phase === 'recording') {
        return { status: 'recording', runId: started.runId };
      }
      return settleByVerdict(key, verdict);
    }
    if ('verdict' in started) {
      return settleByVerdict(key, started.verdict);
    }
    return settleRow(key, 'invited', { userId: started.userId, invitationId: started.invitationId });
  }

  /** Settles a batch row once its invitation workflow has recorded or rejected the invitation. */
  async function settleByVerdict(
    key: { batchId: string; rowNumber: number },
    verdict: Exclude<RunVerdict, { phase: 'recording' }>,
  ): Promise<BatchRowCheck> {
    if (verdict.phase === 'rejected') {
      switch (verdict.type) {
        case InvitationRejection.alreadyMember:
          return settleRow(key, 'already_member', { reason: ROW_REASONS.alreadyMember });
        case InvitationRejection.memberDeactivated:
          return settleRow(key, 'already_member', { reason: ROW_REASONS.deactivated });
        case InvitationRejection.alreadyInvited:
          return settleRow(key, 'already_member', { reason: ROW_REASONS.pending });
        default:
          return settleRow(key, 'failed', { reason: verdict.message });
      }
    }

    const invitation = await db('invitations')
      .join('memberships', 'memberships.id', 'invitations.membership_id')
      .where('invitations.id', verdict.invitationId)
      .first('invitations.batch_id', 'invitations.status', 'memberships.user_id');
    if (invitation.batch_id === key.batchId) {
      return settleRow(key, 'invited', { userId: invitation.user_id, invitationId: verdict.invitationId });
    }
    if (invitation.status === 'pending') {
      return settleRow(key, 'already_member', { reason: ROW_REASONS.pending, userId: invitation.user_id });
    }
    if (invitation.status === 'accepted') {
      return settleRow(key, 'already_member', { reason: ROW_REASONS.alreadyMember, userId: invitation.user_id });
    }
    // Someone else's invitation that has just expired or been revoked: its workflow is ending, and the
    // next call starts this row's own.
    return { status: 'recording' };
  }

  /** Marks a queued row `failed` after its invitation activity gave up. */
  async function failBatchRow(input: { batchId: string; rowNumber: number; reason: string }): Promise<BatchRowCheck> {
    log.warn('Batch row failed', { batchId: input.batchId, rowNumber: input.rowNumber, reason: input.reason });
    return settleRow(input, 'failed', { reason: input.reason });
  }

  /** Ends the batch: its status becomes `completed`, with one audit event that carries the counts. */
  async function completeBatch(input: { batchId: string }): Promise<BatchCounts> {
    const { workflowId } = currentWorkflow();
    return db.transaction(async (trx) => {
      const batch = await trx('batches').where({ id: input.batchId }).forUpdate().first();
      if (!batch) {
        throw reject('BatchNotFound', `Batch ${input.batchId} does not exist.`);
      }
      const rows: { status: BatchRowStatus; count: string }[] = await trx('batch_rows')
        .where({ batch_id: input.batchId })
        .groupBy('status')
        .select('status')
        .count({ count: '*' });
      const counts: BatchCounts = { total: batch.total_rows, queued: 0, invited: 0, already_member: 0, invalid: 0, failed: 0 };
      for (const { status, count } of rows) {
        counts[status] = Number(count);
      }

      if (batch.status === 'running') {
        await trx('batches').where({ id: input.batchId }).update({ status: 'completed', completed_at: trx.fn.now() });
      }
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: 'batch.completed',
        targetUserId: null,
        accountId: batch.account_id,
        environmentId: batch.environment_id,
        workflowId,
        details: { batchId: input.batchId, counts },
        eventKey: `batch.completed:${input.batchId}`,
      });
      return counts;
    });
  }

  return {
    checkInvitationRecorded,
    sendInvitationGroupEmail,
    listQueuedBatchRows,
    inviteBatchRow,
    failBatchRow,
    completeBatch,
  };
}

export type BulkActivities = ReturnType<typeof createBulkActivities>;
