import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

import type { AccountSettingsActivities, EmailChangeStatus, PasswordResetStatus } from '../activities/account-settings.js';

// Workflows of email changes and password resets. Neither receives a token or a password. The email
// activities derive each link from a salt in the database, and the API sets passwords in its own
// transaction and then signals the workflow.

const {
  recordEmailChange,
  sendEmailChangeConfirmation,
  sendEmailChangeNotice,
  expireEmailChange,
  sendPasswordResetEmail,
  expirePasswordReset,
} = proxyActivities<AccountSettingsActivities>({
  startToCloseTimeout: '30s',
  // About an hour of database or SendGrid outage, the default reset link lifetime. After that the
  // workflow fails where operators see it, and a new request from the person starts over.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 60 },
});

// ---------------------------------------------------------------------------------------------------
// Email change

/** One request to change a person's sign-in email address, as the API received it. */
export interface EmailChangeRequest {
  newEmail: string;
  /** The session the request came from, for the audit event. */
  requestedBySessionId: string;
}

export interface EmailChangeWorkflowInput {
  userId: string;
  /** How long the confirmation link works, in milliseconds. */
  ttlMs: number;
  /**
   * The request this run handles. The first run has none, because its request is the signal it was
   * started with. A run continued as new gets the request that replaced the previous one.
   */
  request?: EmailChangeRequest;
}

export type EmailChangePhase = 'recording' | EmailChangeStatus;

export interface EmailChangeState {
  phase: EmailChangePhase;
  emailChangeId: string | null;
  expiresAt: string | null;
}

export interface EmailChangeOutcome {
  outcome: Exclude<EmailChangeStatus, 'pending' | 'superseded'>;
  emailChangeId: string;
}

/** A new request; it replaces the one this run is waiting on, whose link then stops working. */
export const emailChangeRequestedSignal = defineSignal<[EmailChangeRequest]>('emailChangeRequested');
/**
 * Sent by the API after it committed the end of a change: `confirmed`, `failed` (another user has the
 * address by now) or `cancelled` (the password was changed or reset).
 */
export const emailChangeEndedSignal =
  defineSignal<[{ emailChangeId: string; status: 'confirmed' | 'failed' | 'cancelled' }]>('emailChangeEnded');
export const emailChangeStateQuery = defineQuery<EmailChangeState>('emailChangeState');

/** Returns the workflow id of a user's email changes. A newer request continues the same workflow as new. */
export function emailChangeWorkflowId(userId: string): string {
  return `email-change-${userId}`;
}

/**
 * Handles one email change request per run: records it, mails the confirmation link to the new address
 * and a notice to the old one, then waits for the confirmation, the expiry or a newer request. A newer
 * request continues the workflow as new with that request, so each run has one `email_changes` row.
 * The next run marks this run's row `superseded` in the transaction that records its own.
 */
export async function emailChangeWorkflow(input: EmailChangeWorkflowInput): Promise<EmailChangeOutcome> {
  const state: EmailChangeState = { phase: 'recording', emailChangeId: null, expiresAt: null };
  let newestRequest: EmailChangeRequest | undefined = input.request;
  // Stored whatever its id, because the API's signal can arrive in the same workflow task as the recording result.
  let endedByApi: { emailChangeId: string; status: 'confirmed' | 'failed' | 'cancelled' } | undefined;

  const describe = () => {
    const expiry = state.phase === 'pending' && state.expiresAt ? ` · link expires ${state.expiresAt}` : '';
    setCurrentDetails(`**${state.phase}** · user ${input.userId}${expiry}`);
  };

  setHandler(emailChangeStateQuery, () => state);
  setHandler(emailChangeRequestedSignal, (request) => {
    newestRequest = request;
  });
  setHandler(emailChangeEndedSignal, (ended) => {
    endedByApi = ended;
  });

  // Signal-with-start delivers the first run's request together with the start, so this wait ends in
  // the first workflow task.
  await condition(() => newestRequest !== undefined);
  const request = newestRequest!;
  newestRequest = undefined;
  describe();

  const recorded = await recordEmailChange({
    userId: input.userId,
    newEmail: request.newEmail,
    requestedBySessionId: request.requestedBySessionId,
    expiresAt: new Date(Date.now() + input.ttlMs).toISOString(),
  });
  const emailChangeId = recorded.emailChangeId;
  Object.assign(state, { phase: 'pending', emailChangeId, expiresAt: recorded.expiresAt });
  describe();

  // Both emails at once: a slow old address must not hold up the link to the new one.
  const [confirmation] = await Promise.all([sendEmailChangeConfirmation({ emailChangeId }), sendEmailChangeNotice({ emailChangeId })]);
  state.phase = confirmation.status;
  describe();

  const endedHere = () => endedByApi?.emailChangeId === emailChangeId;
  // The timers below last at least 1 ms: condition() with a timeout of 0 would add a patch marker to history.
  while (state.phase === 'pending' && newestRequest === undefined) {
    const untilExpiry = Date.parse(state.expiresAt!) - Date.now();
    const woken = await condition(() => endedHere() || newestRequest !== undefined, Math.max(untilExpiry, 1));
    if (endedHere()) {
      state.phase = endedByApi!.status;
    } else if (!woken) {
      // The activity returns the stored status, so a confirmation whose signal was lost still ends as confirmed.
      state.phase = (await expireEmailChange({ emailChangeId })).status;
    }
    describe();
  }

  if (newestRequest !== undefined) {
    if (state.phase === 'pending') {
      state.phase = 'superseded';
    }
    describe();
    log.info('Email change replaced by a newer request', { emailChangeId, phase: state.phase });
    return continueAsNew<typeof emailChangeWorkflow>({ userId: input.userId, ttlMs: input.ttlMs, request: newestRequest });
  }

  describe();
  log.info('Email change settled', { emailChangeId, outcome: state.phase });
  return { outcome: state.phase as EmailChangeOutcome['outcome'], emailChangeId };
}

// ---------------------------------------------------------------------------------------------------
// Password reset

export interface PasswordResetWorkflowInput {
  userId: string;
  /** How long each reset link works, in milliseconds. */
  ttlMs: number;
}

/** `sending` while a link is being created and mailed; `skipped` when the person has no password to reset. */
export type PasswordResetPhase = 'sending' | PasswordResetStatus | 'skipped';

export interface PasswordResetState {
  phase: PasswordResetPhase;
  /** The newest link's `password_resets` row. */
  resetId: string | null;
  expiresAt: string | null;
  /** Requests received by this run; each one that is handled mails a new link. */
  requests: number;
}

export interface PasswordResetOutcome {
  outcome: Exclude<PasswordResetPhase, 'sending' | 'pending'>;
  resetId: string | null;
  requests: number;
}

/** A request for a new link. The API sends it with signal-with-start, so each user has one reset workflow at a time. */
export const passwordResetRequestedSignal = defineSignal('passwordResetRequested');
/**
 * Sent by the API after it committed the end of a link: `used` (the password was set) or `superseded`
 * (the sign-in email changed, so links mailed to the old address stop working).
 */
export const passwordResetEndedSignal = defineSignal<[{ resetId: string; status: 'used' | 'superseded' }]>('passwordResetEnded');
export const passwordResetStateQuery = defineQuery<PasswordResetState>('passwordResetState');

export function passwordResetWorkflowId(userId: string): string {
  return `password-reset-${userId}`;
}

/**
 * Mails a single-use reset link for each request and keeps only the newest one working: each new link
 * marks the previous one `superseded` in the same transaction that creates it. The run ends when its
 * newest link is used, expires or is superseded by an email change, and no request is waiting.
 * Requests that arrive while a link is being mailed get one new link together, not one each.
 */
export async function passwordResetWorkflow(input: PasswordResetWorkflowInput): Promise<PasswordResetOutcome> {
  const state: PasswordResetState = { phase: 'sending', resetId: null, expiresAt: null, requests: 0 };
  let handledRequests = 0;
  let endedByApi: { resetId: string; status: 'used' | 'superseded' } | undefined;
  // Steps are unique per workflow id across runs, because a later run reuses the id.
  const { runId } = workflowInfo();

  const describe = () => {
    const expiry = state.phase === 'pending' && state.expiresAt ? ` · link expires ${state.expiresAt}` : '';
    setCurrentDetails(`**${state.phase}** · user ${input.userId}${expiry} · requests ${state.requests}`);
  };

  setHandler(passwordResetStateQuery, () => state);
  setHandler(passwordResetRequestedSignal, () => {
    state.requests += 1;
  });
  setHandler(passwordResetEndedSignal, (ended) => {
    endedByApi = ended;
  });

  const hasNewRequest = () => state.requests > handledRequests;
  const endedHere = () => state.resetId !== null && endedByApi?.resetId === state.resetId;

  // Signal-with-start delivers the first request together with the start.
  await condition(hasNewRequest);
  while (hasNewRequest() || state.phase === 'pending') {
    if (hasNewRequest()) {
      handledRequests = state.requests;
      state.phase = 'sending';
      describe();
      const expiresAt = new Date(Date.now() + input.ttlMs).toISOString();
      const sent = await sendPasswordResetEmail({ userId: input.userId, step: `${runId}/request-${handledRequests}`, expiresAt });
      Object.assign(state, { phase: sent.status, resetId: sent.resetId, expiresAt });
      describe();
      continue;
    }

    const untilExpiry = Date.parse(state.expiresAt!) - Date.now();
    const woken = await condition(() => endedHere() || hasNewRequest(), Math.max(untilExpiry, 1));
    if (endedHere()) {
      state.phase = endedByApi!.status;
    } else if (!woken) {
      state.phase = (await expirePasswordReset({ resetId: state.resetId! })).status;
    }
    describe();
  }

  log.info('Password reset settled', { outcome: state.phase, requests: state.requests });
  return { outcome: state.phase as PasswordResetOutcome['outcome'], resetId: state.resetId, requests: state.requests };
}
