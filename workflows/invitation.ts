import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

import type { InvitationActivities } from '../activities/invitations.js';
import type { MemberStatus } from './search-attributes.js';
import { showMemberStatus } from './visibility.js';

export interface InvitationTimingInput {
  ttlMs: number;
  reminderAfterMs: number;
  resendCooldownMs: number;
  maxResends: number;
}

/** Workflow input. It carries no token and no password: the email activity derives the link itself. */
export interface InvitationWorkflowInput {
  accountId: string;
  environmentId: string;
  environment: string;
  email: string;
  roles: string[];
  invitedByUserId: string | null;
  timing: InvitationTimingInput;
  /** Re-invites a deactivated member who never accepted; otherwise a deactivated member is rejected. */
  reactivation?: boolean;
  /** The bulk onboarding that started this invitation, if any. */
  batchId?: string;
  /**
   * `deferred` creates the link without mailing it, because the caller sends one email for several
   * invitations. Absent means `send`.
   */
  emailDelivery?: 'send' | 'deferred';
}

export type InvitationPhase = 'recording' | 'pending' | 'accepted' | 'expired' | 'revoked' | 'rejected';

export interface InvitationState {
  phase: InvitationPhase;
  invitationId: string | null;
  membershipId: string | null;
  userId: string | null;
  expiresAt: string | null;
  resendCount: number;
  lastSentAt: string | null;
  reminderSent: boolean;
  /** Reason the invitation was not recorded, when phase is `rejected`. */
  rejection: { type: string; message: string } | null;
}

export interface InvitationOutcome {
  outcome: Exclude<InvitationPhase, 'recording' | 'pending'>;
  invitationId: string | null;
  membershipId: string | null;
}

/** Returns the state once the invitation is recorded; the API's invite call waits on it. */
export const invitationRecordedUpdate = defineUpdate<InvitationState>('invitationRecorded');
export const resendInvitationUpdate = defineUpdate<InvitationState, [{ actorUserId: string | null }]>('resendInvitation');
export const revokeInvitationUpdate = defineUpdate<InvitationState, [{ actorUserId: string | null }]>('revokeInvitation');
/** Sent by the API after it committed the acceptance; the password never passes through here. */
export const invitationAcceptedSignal = defineSignal('invitationAccepted');
/** Sent by another workflow (deactivation) that already ended the invitation in the database. */
export const invitationEndedSignal = defineSignal<[{ status: 'revoked' | 'expired' }]>('invitationEnded');
export const invitationStateQuery = defineQuery<InvitationState>('invitationState');

/** The membership status that each settled phase leaves; the workflow starts with `invited`. */
const MEMBER_STATUS_OF_PHASE: Partial<Record<InvitationPhase, MemberStatus>> = {
  accepted: 'active',
  expired: 'expired',
  revoked: 'revoked',
};

/** Failure types the API maps to HTTP statuses. */
export const InvitationFailure = {
  notPending: 'InvitationNotPending',
  resendCooldown: 'ResendCooldown',
  resendLimit: 'ResendLimitReached',
} as const;

/** Database and SendGrid outages are retried for up to a day before the invitation fails visibly. */
const RETRY = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 300 } as const;

const { recordInvitation, sendInvitationEmail, expireInvitation, revokeInvitation } = proxyActivities<InvitationActivities>({
  startToCloseTimeout: '30s',
  retry: RETRY,
});

/**
 * Local activities for the database writes that the API waits for: they run inside the workflow task,
 * which saves a round trip through the activity task queue. Email stays a normal activity, because its
 * provider can be slow or down for hours.
 */
const local = proxyLocalActivities<InvitationActivities>({
  startToCloseTimeout: '30s',
  retry: RETRY,
});

/**
 * Patch ids. Histories from before a patch replay the old path. Keep each branch until no workflow
 * that started before the patch can still be running: invitations last INVITE_TTL, 7 days by default.
 */
export const INVITATION_PATCHES = {
  recordLocally: 'record-invitation-locally',
  revokeLocally: 'revoke-invitation-locally',
  rejectionMemberStatus: 'rejection-member-status',
} as const;

/**
 * The membership status that a rejection reveals, by the recording activity's rejection type. A run
 * rejected for an active member would otherwise keep the `invited` it started with.
 */
const MEMBER_STATUS_OF_REJECTION: Partial<Record<string, MemberStatus>> = {
  AlreadyMember: 'active',
  MemberDeactivated: 'deactivated',
};

/**
 * Returns the failure that an activity threw on purpose, one that no retry can fix, or undefined. A
 * normal activity's failure arrives wrapped in an ActivityFailure; a local activity's non-retryable
 * failure arrives as the activity's ApplicationFailure itself.
 */
function nonRetryableCause(error: unknown): ApplicationFailure | undefined {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  return cause instanceof ApplicationFailure && cause.nonRetryable ? cause : undefined;
}

export async function invitationWorkflow(input: InvitationWorkflowInput): Promise<InvitationOutcome> {
  const { timing } = input;
  const state: InvitationState = {
    phase: 'recording',
    invitationId: null,
    membershipId: null,
    userId: null,
    expiresAt: null,
    resendCount: 0,
    lastSentAt: null,
    reminderSent: false,
    rejection: null,
  };
  // Each new link bumps this, so the timers below restart.
  let linkVersion = 0;

  const isSettled = () => state.phase !== 'recording' && state.phase !== 'pending';
  let shownStatus: MemberStatus = 'invited';
  const describe = () => {
    const expiry = state.expiresAt ? `, expires ${state.expiresAt}` : '';
    setCurrentDetails(`**${state.phase}** · ${input.accountId}/${input.environment}${expiry} · resends ${state.resendCount}`);
    const status = MEMBER_STATUS_OF_PHASE[state.phase];
    if (status !== undefined && status !== shownStatus) {
      showMemberStatus(status);
      shownStatus = status;
    }
  };

  setHandler(invitationStateQuery, () => state);

  setHandler(invitationRecordedUpdate, async () => {
    await condition(() => state.phase !== 'recording');
    if (state.phase === 'rejected' && state.rejection) {
      throw ApplicationFailure.create({ type: state.rejection.type, message: state.rejection.message, nonRetryable: true });
    }
    return state;
  });

  setHandler(invitationAcceptedSignal, () => {
    if (state.phase === 'pending') {
      state.phase = 'accepted';
    }
  });

  setHandler(invitationEndedSignal, ({ status }) => {
    if (state.phase === 'pending') {
      state.phase = status;
    }
  });

  setHandler(
    resendInvitationUpdate,
    async ({ actorUserId }) => {
      const now = Date.now();
      const sentAt = now;
      const expiresAt = new Date(now + timing.ttlMs).toISOString();
      state.resendCount += 1;
      state.lastSentAt = new Date(sentAt).toISOString();
      const result = await sendInvitationEmail({
        invitationId: state.invitationId!,
        step: `resend-${state.resendCount}`,
        kind: 'resend',
        expiresAt,
        actorUserId,
      });
      if (result.status !== 'pending') {
        state.phase = result.status;
        throw ApplicationFailure.create({
          type: InvitationFailure.notPending,
          message: `The invitation is ${result.status}, so it cannot be resent.`,
          nonRetryable: true,
        });
      }
      state.expiresAt = expiresAt;
      linkVersion += 1;
      describe();
      return state;
    },
    {
      // Validators run before anything reaches history, so a rejected resend leaves no trace.
      validator: (_request) => {
        if (state.phase !== 'pending') {
          throw ApplicationFailure.create({
            type: InvitationFailure.notPending,
            message: `The invitation is ${state.phase}, so it cannot be resent.`,
          });
        }
        if (state.resendCount >= timing.maxResends) {
          throw ApplicationFailure.create({
            type: InvitationFailure.resendLimit,
            message: `The invitation was already resent ${state.resendCount} times, the maximum. Revoke it and invite again.`,
          });
        }
        const waitMs = Date.parse(state.lastSentAt!) + timing.resendCooldownMs - Date.now();
        if (waitMs > 0) {
          throw ApplicationFailure.create({
            type: InvitationFailure.resendCooldown,
            message: `The invitation email was sent moments ago; wait ${Math.ceil(waitMs / 1000)} s before resending it.`,
            details: [{ retryAfterSeconds: Math.ceil(waitMs / 1000) }],
          });
        }
      },
    },
  );

  setHandler(
    revokeInvitationUpdate,
    async ({ actorUserId }) => {
      const revoke = patched(INVITATION_PATCHES.revokeLocally) ? local.revokeInvitation : revokeInvitation;
      const result = await revoke({ invitationId: state.invitationId!, actorUserId, reason: 'revoked' });
      state.phase = result.status;
      describe();
      return state;
    },
    {
      validator: (_request) => {
        if (state.phase !== 'pending') {
          throw ApplicationFailure.create({
            type: InvitationFailure.notPending,
            message: `The invitation is ${state.phase}, so it cannot be revoked.`,
          });
        }
      },
    },
  );

  describe();
  try {
    const record = patched(INVITATION_PATCHES.recordLocally) ? local.recordInvitation : recordInvitation;
    const recorded = await record({
      accountId: input.accountId,
      environmentId: input.environmentId,
      email: input.email,
      roles: input.roles,
      invitedByUserId: input.invitedByUserId,
      expiresAt: new Date(Date.now() + timing.ttlMs).toISOString(),
      ...(input.reactivation ? { reactivation: true } : {}),
      ...(input.batchId ? { batchId: input.batchId } : {}),
    });
    Object.assign(state, {
      phase: 'pending',
      invitationId: recorded.invitationId,
      membershipId: recorded.membershipId,
      userId: recorded.userId,
      expiresAt: recorded.expiresAt,
    });
  } catch (error) {
    // The activity rejects a person who is already a member or already invited. Other failures,
    // such as exhausted retries, fail the workflow so that operators see them.
    const rejection = nonRetryableCause(error);
    if (rejection) {
      state.phase = 'rejected';
      state.rejection = { type: rejection.type ?? 'InvitationRejected', message: rejection.message };
      const revealed = MEMBER_STATUS_OF_REJECTION[state.rejection.type];
      if (revealed !== undefined && patched(INVITATION_PATCHES.rejectionMemberStatus)) {
        showMemberStatus(revealed);
        shownStatus = revealed;
      }
      describe();
      await allHandlersFinished();
      return { outcome: 'rejected', invitationId: null, membershipId: null };
    }
    throw error;
  }

  state.lastSentAt = new Date(Date.now()).toISOString();
  try {
    const first = await sendInvitationEmail({
      invitationId: state.invitationId!,
      step: 'initial',
      kind: 'invitation',
      ...(input.emailDelivery === 'deferred' ? { deliver: false } : {}),
    });
    if (first.status !== 'pending') {
      state.phase = first.status;
    }
  } catch (error) {
    // A provider that rejects the address for good leaves a link that no one received; end the invitation
    // so that the person can be invited again once the address is fixed.
    if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.nonRetryable) {
      const revoked = await revokeInvitation({ invitationId: state.invitationId!, actorUserId: null, reason: 'email_rejected' });
      state.phase = revoked.status;
    } else {
      throw error;
    }
  }
  describe();

  while (state.phase === 'pending') {
    const version = linkVersion;
    const linkChangedOrSettled = () => isSettled() || linkVersion !== version;
    const untilExpiry = Date.parse(state.expiresAt!) - Date.now();
    const untilReminder = Date.parse(state.lastSentAt) + timing.reminderAfterMs - Date.now();

    // One reminder per invitation, due a while after the latest email and only if it comes before expiry.
    if (!state.reminderSent && untilReminder < untilExpiry) {
      if (await condition(linkChangedOrSettled, Math.max(untilReminder, 0))) {
        continue;
      }
      const reminder = await sendInvitationEmail({ invitationId: state.invitationId!, step: 'reminder', kind: 'reminder' });
      state.reminderSent = true;
      if (reminder.status !== 'pending') {
        state.phase = reminder.status;
      }
      describe();
      continue;
    }

    if (await condition(linkChangedOrSettled, Math.max(untilExpiry, 0))) {
      continue;
    }
    const expired = await expireInvitation({ invitationId: state.invitationId! });
    state.phase = expired.status;
    describe();
  }

  // The loop also ends through signals, which do not update the details themselves.
  describe();
  // An update handler may still be finishing its activity; let it reply before the workflow closes.
  await allHandlersFinished();
  log.info('Invitation settled', { outcome: state.phase, workflowId: workflowInfo().workflowId });
  return { outcome: state.phase as InvitationOutcome['outcome'], invitationId: state.invitationId, membershipId: state.membershipId };
}
