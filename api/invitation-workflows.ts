import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';

import { InvitationRejection } from '../activities/invitations.js';
import type { Config } from '../lib/config.js';
import { normalizeEmail } from '../lib/email-address.js';
import { lifecycleSearchAttributes } from '../workflows/search-attributes.js';
import { emailFingerprint } from '../lib/secrets.js';
import { summarizeRoles, visibleEmail } from '../workflows/visibility.js';
import {
  InvitationFailure,
  invitationAcceptedSignal,
  invitationRecordedUpdate,
  invitationWorkflow,
  resendInvitationUpdate,
  revokeInvitationUpdate,
  type InvitationState,
  type InvitationWorkflowInput,
} from '../workflows/invitation.js';
import { conflict, HttpError } from './errors.js';

/**
 * Returns the invitation workflow id for one person in one environment. A keyed hash replaces the
 * email, because workflow ids are visible to every operator and no payload codec covers them. The
 * account and environment stay readable.
 */
export function invitationWorkflowId(idKey: Buffer, accountId: string, environment: string, email: string): string {
  return `invitation-${accountId}-${environment}-${emailFingerprint(idKey, normalizeEmail(email))}`;
}

/** Returns the one-line summary that the Temporal Web UI shows for an invitation workflow. */
export function invitationSummary(
  input: Pick<InvitationWorkflowInput, 'accountId' | 'environment' | 'email' | 'roles'>,
  showEmails: boolean,
): string {
  return `Invitation of ${visibleEmail(input.email, showEmails)} to ${input.accountId}/${input.environment} as ${summarizeRoles(input.roles)}`;
}

/** Maps what the invitation workflow rejects to the API's statuses. */
function toHttpError(error: unknown): HttpError | undefined {
  if (error instanceof WorkflowExecutionAlreadyStartedError) {
    return conflict('invitation_pending', 'This person already has a pending invitation to this environment.');
  }
  if (error instanceof WorkflowNotFoundError) {
    return conflict('invitation_not_pending', 'The invitation has ended, so it cannot be changed.');
  }
  if (!(error instanceof WorkflowUpdateFailedError) || !(error.cause instanceof ApplicationFailure)) {
    return undefined;
  }

  const failure = error.cause;
  switch (failure.type) {
    case InvitationRejection.alreadyMember:
      return conflict('already_member', failure.message);
    case InvitationRejection.memberDeactivated:
      return conflict('member_deactivated', failure.message);
    case InvitationRejection.alreadyInvited:
      return conflict('invitation_pending', failure.message);
    case InvitationFailure.notPending:
      return conflict('invitation_not_pending', failure.message);
    case InvitationFailure.resendLimit:
      return conflict('resend_limit_reached', failure.message);
    case InvitationFailure.resendCooldown: {
      const [detail] = (failure.details ?? []) as [{ retryAfterSeconds?: number }?];
      const retryAfter = String(detail?.retryAfterSeconds ?? 60);
      return new HttpError(429, 'resend_too_soon', failure.message, { retryAfterSeconds: Number(retryAfter) }, { 'Retry-After': retryAfter });
    }
    case InvitationRejection.emailRejected:
      return new HttpError(502, 'email_rejected', 'The email provider rejected the message; check the address and try again.');
    default:
      return undefined;
  }
}

async function translateErrors<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw toHttpError(error) ?? error;
  }
}

export type StartInvitationInput = Omit<InvitationWorkflowInput, 'timing'>;

export class InvitationWorkflows {
  constructor(
    private readonly temporal: Client,
    private readonly config: Config,
    private readonly idKey: Buffer,
  ) {}

  /**
   * Starts the invitation workflow and waits until it has recorded the invitation (Update-with-Start),
   * so the caller can respond with the stored membership. A running invitation for the same person and
   * environment makes the start fail: the id conflict policy is FAIL. A finished one may be followed by a
   * new run: the id reuse policy is ALLOW_DUPLICATE.
   */
  async start(input: StartInvitationInput): Promise<{ workflowId: string; state: InvitationState }> {
    const workflowId = invitationWorkflowId(this.idKey, input.accountId, input.environment, input.email);
    const startWorkflowOperation = new WithStartWorkflowOperation(invitationWorkflow, {
      workflowId,
      taskQueue: this.config.temporal.taskQueue,
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: invitationSummary(input, this.config.temporal.showEmails),
      typedSearchAttributes: lifecycleSearchAttributes({
        kind: 'invitation',
        accountId: input.accountId,
        environment: input.environment,
        memberStatus: 'invited',
      }),
      args: [{ ...input, timing: this.config.invitation }],
    });
    const state = await translateErrors(() =>
      this.temporal.workflow.executeUpdateWithStart(invitationRecordedUpdate, { startWorkflowOperation }),
    );
    return { workflowId, state };
  }

  async resend(workflowId: string, actorUserId: string): Promise<InvitationState> {
    const handle = this.temporal.workflow.getHandle(workflowId);
    return translateErrors(() => handle.executeUpdate(resendInvitationUpdate, { args: [{ actorUserId }] }));
  }

  async revoke(workflowId: string, actorUserId: string): Promise<InvitationState> {
    const handle = this.temporal.workflow.getHandle(workflowId);
    return translateErrors(() => handle.executeUpdate(revokeInvitationUpdate, { args: [{ actorUserId }] }));
  }

  /** Tells the workflow that the acceptance was committed; it then ends with `accepted`. */
  async notifyAccepted(workflowId: string, runId: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId, runId).signal(invitationAcceptedSignal);
  }
}
