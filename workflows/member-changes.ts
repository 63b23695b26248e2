import { WorkflowExecutionAlreadyStartedError, type UpdateDefinition } from '@temporalio/common';
import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  allHandlersFinished,
  condition,
  defineUpdate,
  executeChild,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

import type {
  DeactivationImpact,
  DeactivationResult,
  MemberChangeActivities,
  MemberChangeActor,
  MembershipToDeactivate,
  NoticeRequest,
  RoleChangeResult,
} from '../activities/member-changes.js';
import { lifecycleSearchAttributes } from './search-attributes.js';
import { invitationEndedSignal } from './invitation.js';
import { showMemberStatus } from './visibility.js';

/**
 * Workflows that change an existing membership: role changes, deactivation, reactivation, and an
 * operator's deactivation of one person everywhere. The API starts each one with Update-with-Start and
 * waits on its `...Applied` update, which returns as soon as the change is committed. The notice email
 * follows in the same workflow, so a slow email provider never delays the HTTP response.
 */

/**
 * Returns the id of one role change. Like the ids below, it names the account, environment and user, so
 * the Temporal UI can be searched by them. The API's random request id keeps role changes apart.
 */
export function roleChangeWorkflowId(accountId: string, environment: string, userId: string, requestId: string): string {
  return `role-change-${accountId}-${environment}-${userId}-${requestId}`;
}

/** Returns the id of a member's deactivation; the API starts it with conflict policy FAIL, so one runs at a time. */
export function deactivationWorkflowId(accountId: string, environment: string, userId: string): string {
  return `deactivate-${accountId}-${environment}-${userId}`;
}

export function reactivationWorkflowId(accountId: string, environment: string, userId: string): string {
  return `reactivate-${accountId}-${environment}-${userId}`;
}

export function operatorDeactivationWorkflowId(userId: string): string {
  return `operator-deactivate-${userId}`;
}

/** An expected refusal, such as removing the last administrator; `type` is a MemberChangeRejection value. */
export interface MemberChangeRejectionInfo {
  type: string;
  message: string;
}

/** Failure type of a change that failed for an unexpected reason; the workflow itself fails after it. */
export const MEMBER_CHANGE_FAILED = 'MemberChangeFailed';

export interface RoleChangeWorkflowInput {
  accountId: string;
  environmentId: string;
  environment: string;
  userId: string;
  roles: string[];
  actor: MemberChangeActor;
}

export interface DeactivationWorkflowInput {
  accountId: string;
  environmentId: string;
  environment: string;
  userId: string;
  actor: MemberChangeActor;
  reason?: string;
  /** False when the caller sends one notice for several deactivations, as the operator workflow does. */
  notify?: boolean;
}

export interface ReactivationWorkflowInput {
  accountId: string;
  environmentId: string;
  environment: string;
  userId: string;
  actor: MemberChangeActor;
}

export interface OperatorDeactivationWorkflowInput {
  userId: string;
  operatorKeyId: string;
  reason?: string;
}

export type ReactivationResult =
  | { mode: 'active'; membershipId: string; roles: string[] }
  | { mode: 'invitation'; membershipId: string; roles: string[]; invitationId: string; invitationWorkflowId: string };

/**
 * One membership in an operator deactivation. `skipped` means the membership was left as it is:
 * `last_administrator` (the person is its last active administrator), `not_deactivatable` (its status
 * changed meanwhile) or `change_in_progress` (another deactivation of it is running).
 */
export type OperatorMembershipResult = {
  membershipId: string;
  accountId: string;
  environment: string;
  statusBefore: 'invited' | 'active';
} & (
  | { outcome: 'deactivated'; impact: DeactivationImpact }
  | { outcome: 'skipped'; reason: 'last_administrator' | 'not_deactivatable' | 'change_in_progress'; message: string }
  | { outcome: 'failed'; message: string }
);

export interface OperatorDeactivationReport {
  userId: string;
  memberships: OperatorMembershipResult[];
  /** Sessions of the person that were still open and are now revoked, in every account. */
  sessionsEnded: number;
}

/** Outcome of a notice email; a rejected address does not undo the change. */
export type NoticeOutcome = 'sent' | 'already_sent' | 'rejected' | 'not_sent';

export type RoleChangeOutcome =
  | { outcome: 'changed' | 'unchanged'; result: RoleChangeResult; notice: NoticeOutcome }
  | { outcome: 'rejected'; rejection: MemberChangeRejectionInfo };

export type DeactivationOutcome =
  | { outcome: 'deactivated'; result: DeactivationResult; notice: NoticeOutcome }
  | { outcome: 'rejected'; rejection: MemberChangeRejectionInfo };

export type ReactivationOutcome =
  | { outcome: 'reactivated'; result: ReactivationResult; notice: NoticeOutcome }
  | { outcome: 'rejected'; rejection: MemberChangeRejectionInfo };

/** Each returns the committed change, or fails with the rejection's type; the API waits on them. */
export const roleChangeAppliedUpdate = defineUpdate<RoleChangeResult>('roleChangeApplied');
export const deactivationAppliedUpdate = defineUpdate<DeactivationResult>('deactivationApplied');
export const reactivationAppliedUpdate = defineUpdate<ReactivationResult>('reactivationApplied');
export const operatorDeactivationReportUpdate = defineUpdate<OperatorDeactivationReport>('operatorDeactivationReport');

// Database changes: the API waits on these, so retries stop after 15 attempts (about five minutes of
// backoff) and the workflow fails visibly instead of holding the request open.
const changes = proxyActivities<MemberChangeActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 15 },
});

// Notices: nothing waits on them, so a provider outage is retried for up to a day, as invitations are.
const notices = proxyActivities<MemberChangeActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 300 },
});

/** Children an operator deactivation runs at the same time. */
const OPERATOR_CHILD_CONCURRENCY = 5;

type Settled<T> = { result: T } | { rejection: MemberChangeRejectionInfo };

/** Returns the rejection an activity raised on purpose, or undefined for any other failure. */
function rejectionOf(error: unknown): MemberChangeRejectionInfo | undefined {
  if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.nonRetryable) {
    return { type: error.cause.type ?? 'MemberChangeRejected', message: error.cause.message };
  }
  return undefined;
}

/** Registers the handler of `update`: it waits for the change to settle, then returns the result or fails with the rejection. */
function answerWhenSettled<T>(update: UpdateDefinition<T, []>, settled: () => Settled<T> | undefined): void {
  setHandler(update, async () => {
    await condition(() => settled() !== undefined);
    const value = settled()!;
    if ('rejection' in value) {
      throw ApplicationFailure.create({ type: value.rejection.type, message: value.rejection.message, nonRetryable: true });
    }
    return value.result;
  });
}

/**
 * Runs the step that commits the change. An expected rejection becomes the workflow's result. Any other
 * failure is first reported to the waiting update and then fails the workflow, so that operators see it.
 */
async function commitStep<T>(
  step: () => Promise<T>,
  settle: (value: Settled<T>) => void,
): Promise<{ result: T } | { rejection: MemberChangeRejectionInfo }> {
  try {
    const result = await step();
    settle({ result });
    return { result };
  } catch (error) {
    const rejection = rejectionOf(error);
    if (rejection) {
      settle({ rejection });
      setCurrentDetails(`**rejected** · ${rejection.type}: ${rejection.message}`);
      await allHandlersFinished();
      return { rejection };
    }
    settle({ rejection: { type: MEMBER_CHANGE_FAILED, message: 'The change could not be applied; see the workflow history.' } });
    await allHandlersFinished();
    throw error;
  }
}

/**
 * Sends a notice. A notice that cannot be sent for good, such as one to an address the provider rejects,
 * is logged and reported as `rejected`, because the change is already committed.
 */
async function sendNotice(step: string, notice: NoticeRequest): Promise<NoticeOutcome> {
  try {
    return (await notices.sendMemberNotice({ step, notice })).status;
  } catch (error) {
    const rejection = rejectionOf(error);
    if (rejection) {
      log.warn('Member notice not sent', { kind: notice.kind, type: rejection.type, message: rejection.message });
      return 'rejected';
    }
    throw error;
  }
}

/** Replaces a member's roles, then emails the member a notice. */
export async function roleChangeWorkflow(input: RoleChangeWorkflowInput): Promise<RoleChangeOutcome> {
  let settled: Settled<RoleChangeResult> | undefined;
  answerWhenSettled(roleChangeAppliedUpdate, () => settled);
  setCurrentDetails(`**applying** · ${input.accountId}/${input.environment} · user ${input.userId} → ${input.roles.join(', ')}`);

  const committed = await commitStep(
    () => changes.changeMemberRoles({ accountId: input.accountId, environmentId: input.environmentId, userId: input.userId, roles: input.roles, actor: input.actor }),
    (value) => (settled = value),
  );
  if ('rejection' in committed) {
    return { outcome: 'rejected', rejection: committed.rejection };
  }

  const { result } = committed;
  if (!result.changed) {
    setCurrentDetails(`**unchanged** · the member already had ${result.after.join(', ')}`);
    await allHandlersFinished();
    return { outcome: 'unchanged', result, notice: 'not_sent' };
  }

  setCurrentDetails(`**changed** · ${result.before.join(', ')} → ${result.after.join(', ')} · sending notice`);
  const notice = await sendNotice('notice', {
    kind: 'roles_changed',
    membershipId: result.membershipId,
    before: result.before,
    after: result.after,
    actor: input.actor,
  });
  setCurrentDetails(`**changed** · ${result.before.join(', ')} → ${result.after.join(', ')} · notice ${notice}`);
  await allHandlersFinished();
  return { outcome: 'changed', result, notice };
}

/**
 * Deactivates a member, ends the workflow of the invitation it revoked, and emails the member a notice.
 * The invitation is already revoked in the database; the signal only lets its workflow finish now
 * instead of at its next timer.
 */
export async function deactivationWorkflow(input: DeactivationWorkflowInput): Promise<DeactivationOutcome> {
  let settled: Settled<DeactivationResult> | undefined;
  answerWhenSettled(deactivationAppliedUpdate, () => settled);
  setCurrentDetails(`**deactivating** · ${input.accountId}/${input.environment} · user ${input.userId}`);

  // The update returns only after the invitation workflows are signalled, so the signals are part of this step.
  const committed = await commitStep(
    async () => {
      const deactivated = await changes.deactivateMembership({
        accountId: input.accountId,
        environmentId: input.environmentId,
        userId: input.userId,
        actor: input.actor,
        ...(input.reason ? { reason: input.reason } : {}),
      });
      for (const invitation of deactivated.endedInvitations) {
        await signalInvitationEnded(invitation.workflowId, invitation.runId);
      }
      // Workflows recorded before this step existed replay without it.
      const ssoOnboardings = deactivated.ssoOnboardingWorkflowIds ?? [];
      if (patched('cancel-sso-onboardings') && ssoOnboardings.length > 0) {
        await changes.cancelSsoOnboardings({ workflowIds: ssoOnboardings, actor: input.actor });
      }
      return deactivated;
    },
    (value) => (settled = value),
  );
  if ('rejection' in committed) {
    return { outcome: 'rejected', rejection: committed.rejection };
  }

  const { result } = committed;
  showMemberStatus('deactivated');
  const counts = `sessions ${result.impact.sessions}, API keys ${result.impact.apiKeys}, invitations ${result.impact.pendingInvitations}`;
  let notice: NoticeOutcome = 'not_sent';
  if (input.notify !== false) {
    setCurrentDetails(`**deactivated** · stopped ${counts} · sending notice`);
    notice = await sendNotice('notice', {
      kind: 'deactivated',
      membershipId: result.membershipId,
      wasInvited: result.statusBefore === 'invited',
      actor: input.actor,
    });
  }
  setCurrentDetails(`**deactivated** · stopped ${counts} · notice ${notice}`);
  await allHandlersFinished();
  return { outcome: 'deactivated', result, notice };
}

/** Signals an invitation workflow that its invitation was revoked; one that already closed needs nothing. */
async function signalInvitationEnded(workflowId: string, runId: string): Promise<void> {
  try {
    await getExternalWorkflowHandle(workflowId, runId).signal(invitationEndedSignal, { status: 'revoked' });
  } catch (error) {
    // The invitation workflow had already closed, for example at its expiry. The database is right either way.
    log.info('Invitation workflow not signalled; it has already closed', { invitationWorkflowId: workflowId, error: String(error) });
  }
}

/**
 * Reactivates a member. One who had accepted becomes active again with the roles kept through the
 * deactivation, and gets a notice. One who never accepted gets a new invitation, whose email is the notice.
 */
export async function reactivationWorkflow(input: ReactivationWorkflowInput): Promise<ReactivationOutcome> {
  let settled: Settled<ReactivationResult> | undefined;
  answerWhenSettled(reactivationAppliedUpdate, () => settled);
  setCurrentDetails(`**reactivating** · ${input.accountId}/${input.environment} · user ${input.userId}`);
  const target = { accountId: input.accountId, environmentId: input.environmentId, userId: input.userId };

  const committed = await commitStep(
    async (): Promise<ReactivationResult> => {
      const checked = await changes.reactivateMembership({ ...target, actor: input.actor });
      if (checked.mode === 'active') {
        return { mode: 'active', membershipId: checked.membershipId, roles: checked.roles };
      }
      setCurrentDetails(`**inviting again** · the member never accepted · roles ${checked.roles.join(', ')}`);
      const invited = await changes.startReactivationInvitation({
        ...target,
        environment: input.environment,
        roles: checked.roles,
        actor: input.actor,
      });
      return { mode: 'invitation', membershipId: checked.membershipId, roles: checked.roles, ...invited };
    },
    (value) => (settled = value),
  );
  if ('rejection' in committed) {
    return { outcome: 'rejected', rejection: committed.rejection };
  }

  const { result } = committed;
  showMemberStatus(result.mode === 'invitation' ? 'invited' : 'active');
  if (result.mode === 'invitation') {
    setCurrentDetails(`**invited again** · invitation workflow ${result.invitationWorkflowId}`);
    await allHandlersFinished();
    return { outcome: 'reactivated', result, notice: 'not_sent' };
  }

  setCurrentDetails(`**active again** · roles ${result.roles.join(', ')} · sending notice`);
  const notice = await sendNotice('notice', { kind: 'reactivated', membershipId: result.membershipId, actor: input.actor });
  setCurrentDetails(`**active again** · roles ${result.roles.join(', ')} · notice ${notice}`);
  await allHandlersFinished();
  return { outcome: 'reactivated', result, notice };
}

const SKIP_REASONS: Record<string, 'last_administrator' | 'not_deactivatable'> = {
  LastAdministrator: 'last_administrator',
  MemberStatusConflict: 'not_deactivatable',
  MemberNotFound: 'not_deactivatable',
};

/** Runs one membership's deactivation as a child workflow and turns every ending into a result. */
async function deactivateForOperator(
  input: OperatorDeactivationWorkflowInput,
  membership: MembershipToDeactivate,
): Promise<OperatorMembershipResult> {
  const base = {
    membershipId: membership.membershipId,
    accountId: membership.accountId,
    environment: membership.environment,
    statusBefore: membership.status,
  };
  try {
    const outcome = await executeChild(deactivationWorkflow, {
      workflowId: deactivationWorkflowId(membership.accountId, membership.environment, input.userId),
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `Operator deactivation in ${membership.accountId}/${membership.environment}`,
      typedSearchAttributes: lifecycleSearchAttributes({
        kind: 'deactivation',
        accountId: membership.accountId,
        environment: membership.environment,
      }),
      args: [
        {
          accountId: membership.accountId,
          environmentId: membership.environmentId,
          environment: membership.environment,
          userId: input.userId,
          actor: { type: 'operator', operatorKeyId: input.operatorKeyId },
          ...(input.reason ? { reason: input.reason } : {}),
          notify: false,
        },
      ],
    });
    if (outcome.outcome === 'deactivated') {
      return { ...base, outcome: 'deactivated', impact: outcome.result.impact };
    }
    const reason = SKIP_REASONS[outcome.rejection.type];
    return reason
      ? { ...base, outcome: 'skipped', reason, message: outcome.rejection.message }
      : { ...base, outcome: 'failed', message: outcome.rejection.message };
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) {
      return { ...base, outcome: 'skipped', reason: 'change_in_progress', message: 'Another deactivation of this membership is running.' };
    }
    if (error instanceof ChildWorkflowFailure) {
      log.warn('Deactivation child workflow failed', { membershipId: membership.membershipId, error: error.message });
      return { ...base, outcome: 'failed', message: 'The deactivation workflow failed; see its history in the Temporal UI.' };
    }
    throw error;
  }
}

/**
 * Deactivates one person in every account and environment, as platform support does on a customer's
 * request, then ends all the person's sessions and sends one notice listing what was deactivated.
 *
 * Where the person is the last active administrator, the membership is skipped and reported as
 * `skipped` with reason `last_administrator`: the rule that every environment keeps an active
 * administrator holds for operators too, so the account is never left without one. Support can make
 * someone else an administrator there (`npm run admin -- add-administrator`) and run this again; the
 * memberships already deactivated are then no longer listed. The sessions end either way, so a
 * skipped membership keeps only its API keys until it is deactivated.
 */
export async function operatorDeactivationWorkflow(input: OperatorDeactivationWorkflowInput): Promise<OperatorDeactivationReport> {
  let settled: Settled<OperatorDeactivationReport> | undefined;
  answerWhenSettled(operatorDeactivationReportUpdate, () => settled);
  setCurrentDetails(`**listing memberships** · user ${input.userId}`);

  const committed = await commitStep(
    async (): Promise<OperatorDeactivationReport> => {
      const memberships = await changes.listMembershipsToDeactivate({ userId: input.userId });
      const results: OperatorMembershipResult[] = [];
      for (let start = 0; start < memberships.length; start += OPERATOR_CHILD_CONCURRENCY) {
        setCurrentDetails(`**deactivating** · ${start} of ${memberships.length} memberships done · user ${input.userId}`);
        const chunk = memberships.slice(start, start + OPERATOR_CHILD_CONCURRENCY);
        results.push(...(await Promise.all(chunk.map((membership) => deactivateForOperator(input, membership)))));
      }

      const { sessionsEnded } = await changes.endUserSessions({
        userId: input.userId,
        operatorKeyId: input.operatorKeyId,
        ...(input.reason ? { reason: input.reason } : {}),
        memberships: results.map((result) => ({
          membershipId: result.membershipId,
          outcome: result.outcome === 'skipped' ? `skipped:${result.reason}` : result.outcome,
        })),
      });
      return { userId: input.userId, memberships: results, sessionsEnded };
    },
    (value) => (settled = value),
  );
  if ('rejection' in committed) {
    throw ApplicationFailure.create({ type: committed.rejection.type, message: committed.rejection.message, nonRetryable: true });
  }

  const report = committed.result;
  const deactivated = report.memberships.filter((result) => result.outcome === 'deactivated');
  const summary = `${deactivated.length} of ${report.memberships.length} memberships deactivated · ${report.sessionsEnded} sessions ended`;
  let notice: NoticeOutcome = 'not_sent';
  if (deactivated.length > 0) {
    setCurrentDetails(`**done** · ${summary} · sending notice`);
    notice = await sendNotice('notice', {
      kind: 'operator_deactivated',
      userId: input.userId,
      membershipIds: deactivated.map((result) => result.membershipId),
    });
  }
  setCurrentDetails(`**done** · ${summary} · notice ${notice}`);
  await allHandlersFinished();
  log.info('Operator deactivation finished', { workflowId: workflowInfo().workflowId, deactivated: deactivated.length });
  return report;
}
