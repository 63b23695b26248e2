import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
} from '@temporalio/workflow';

import type { SsoActivities, SsoActor } from '../activities/sso.js';

/**
 * Okta onboarding: the customer contact gets a self-service link, enters the app integration's client
 * ID, client secret and issuer, tests a real sign-in, and confirms. An operator then approves, and the
 * connection becomes `active`. The client secret goes from the API straight to the database, encrypted;
 * this workflow only hears that credentials were submitted.
 */

export interface SsoOnboardingInput {
  accountId: string;
  /** The customer contact who receives the link. */
  contactEmail: string;
  startedBy: SsoActor;
  timing: {
    /** Lifetime of the self-service link, in milliseconds. */
    ttlMs: number;
    /** Quiet time after which the contact gets the one reminder, in milliseconds. */
    reminderAfterMs: number;
    /** Activates the connection without an operator once the customer confirms. */
    autoApprove: boolean;
  };
}

export type SsoOnboardingPhase =
  | 'starting'
  | 'waiting_for_credentials'
  | 'testing'
  | 'tested'
  | 'awaiting_approval'
  | 'active'
  | 'expired'
  | 'cancelled'
  | 'rejected';

export interface SsoOnboardingState {
  phase: SsoOnboardingPhase;
  onboardingId: string | null;
  connectionId: string | null;
  expiresAt: string | null;
  reminderSent: boolean;
  /** Message of the latest failed connection test, if the latest test failed. */
  lastTestFailure: string | null;
  rejection: { type: string; message: string } | null;
}

/** Sent by the API after it stored new credentials; the secret itself never comes here. */
export const ssoCredentialsSubmittedSignal = defineSignal('ssoCredentialsSubmitted');
/** Sent by the API after a test sign-in; a failed test carries the message shown to the customer. */
export const ssoConnectionTestedSignal = defineSignal<[{ passed: boolean; failure?: string }]>('ssoConnectionTested');
export const ssoCustomerConfirmedSignal = defineSignal('ssoCustomerConfirmed');
export const approveSsoOnboardingUpdate = defineUpdate<SsoOnboardingState, [{ actor: SsoActor }]>('approveSsoOnboarding');
export const cancelSsoOnboardingUpdate = defineUpdate<SsoOnboardingState, [{ actor: SsoActor }]>('cancelSsoOnboarding');
/** Returns the state once the onboarding is recorded; the API's start call waits on it. */
export const ssoOnboardingRecordedUpdate = defineUpdate<SsoOnboardingState>('ssoOnboardingRecorded');
export const ssoOnboardingStateQuery = defineQuery<SsoOnboardingState>('ssoOnboardingState');

/** Failure types the API maps to HTTP statuses. */
export const SsoOnboardingFailure = {
  notAwaitingApproval: 'SsoOnboardingNotAwaitingApproval',
  alreadyEnded: 'SsoOnboardingEnded',
} as const;

export function ssoOnboardingWorkflowId(accountId: string): string {
  return `sso-onboarding-${accountId}`;
}

const { recordSsoOnboarding, sendSsoOnboardingEmail, notifySsoOperators, activateSsoConnection, endSsoOnboarding } =
  proxyActivities<SsoActivities>({
    startToCloseTimeout: '30s',
    // Database and SendGrid outages are retried for up to a day before the onboarding fails visibly.
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m', maximumAttempts: 300 },
  });

const CUSTOMER_PHASES: readonly SsoOnboardingPhase[] = ['waiting_for_credentials', 'testing', 'tested'];
const FINAL_PHASES: readonly SsoOnboardingPhase[] = ['active', 'expired', 'cancelled', 'rejected'];

function isNonRetryable(error: unknown): error is ActivityFailure & { cause: ApplicationFailure } {
  return error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.nonRetryable === true;
}

export async function ssoOnboardingWorkflow(input: SsoOnboardingInput): Promise<SsoOnboardingState> {
  const { timing } = input;
  const state: SsoOnboardingState = {
    phase: 'starting',
    onboardingId: null,
    connectionId: null,
    expiresAt: null,
    reminderSent: false,
    lastTestFailure: null,
    rejection: null,
  };
  // Bumped by every customer action, so the reminder timer starts again.
  let customerActions = 0;
  let confirmed = false;
  let approvedBy: SsoActor | null = null;

  const inCustomerPhase = () => CUSTOMER_PHASES.includes(state.phase);
  const describe = () => {
    const expiry = state.expiresAt && inCustomerPhase() ? ` · link expires ${state.expiresAt}` : '';
    const failure = state.lastTestFailure ? ` · last test failed` : '';
    setCurrentDetails(`**${state.phase}** · account ${input.accountId}${expiry}${failure}`);
  };

  setHandler(ssoOnboardingStateQuery, () => state);

  setHandler(ssoOnboardingRecordedUpdate, async () => {
    await condition(() => state.phase !== 'starting');
    if (state.phase === 'rejected' && state.rejection) {
      throw ApplicationFailure.create({ type: state.rejection.type, message: state.rejection.message, nonRetryable: true });
    }
    return state;
  });

  setHandler(ssoCredentialsSubmittedSignal, () => {
    if (inCustomerPhase()) {
      state.phase = 'testing';
      state.lastTestFailure = null;
      customerActions += 1;
      describe();
    }
  });

  // A failed test of a connection that had passed before sends it back to `testing`.
  setHandler(ssoConnectionTestedSignal, ({ passed, failure }) => {
    if (state.phase !== 'testing' && state.phase !== 'tested') {
      return;
    }
    customerActions += 1;
    if (passed) {
      state.phase = 'tested';
      state.lastTestFailure = null;
    } else {
      state.phase = 'testing';
      state.lastTestFailure = failure ?? 'The test sign-in failed.';
    }
    describe();
  });

  // The API sends this only after it found the connection `tested` in the database, so a lost
  // `ssoConnectionTested` signal does not keep the onboarding in `testing`.
  setHandler(ssoCustomerConfirmedSignal, () => {
    if (inCustomerPhase()) {
      state.phase = 'tested';
      confirmed = true;
      customerActions += 1;
    }
  });

  setHandler(
    approveSsoOnboardingUpdate,
    async ({ actor }) => {
      approvedBy = actor;
      await condition(() => FINAL_PHASES.includes(state.phase));
      return state;
    },
    {
      // Validators run before anything reaches history, so a rejected approval leaves no trace.
      validator: (_request) => {
        if (state.phase !== 'awaiting_approval' || approvedBy) {
          throw ApplicationFailure.create({
            type: SsoOnboardingFailure.notAwaitingApproval,
            message: `The onboarding is ${state.phase}; only a customer-confirmed connection can be approved.`,
          });
        }
      },
    },
  );

  setHandler(
    cancelSsoOnboardingUpdate,
    async ({ actor }) => {
      const ended = await endSsoOnboarding({ onboardingId: state.onboardingId!, status: 'cancelled', actor });
      if (ended.status === 'cancelled') {
        state.phase = 'cancelled';
      }
      describe();
      return state;
    },
    {
      validator: (_request) => {
        if (FINAL_PHASES.includes(state.phase) || state.phase === 'starting' || approvedBy) {
          throw ApplicationFailure.create({
            type: SsoOnboardingFailure.alreadyEnded,
            message: `The onboarding is ${state.phase}${approvedBy ? ' and approved' : ''}, so it cannot be cancelled.`,
          });
        }
      },
    },
  );

  describe();
  try {
    const recorded = await recordSsoOnboarding({
      accountId: input.accountId,
      contactEmail: input.contactEmail,
      startedBy: input.startedBy,
      expiresAt: new Date(Date.now() + timing.ttlMs).toISOString(),
    });
    Object.assign(state, {
      phase: 'waiting_for_credentials',
      onboardingId: recorded.onboardingId,
      connectionId: recorded.connectionId,
      expiresAt: recorded.expiresAt,
    });
  } catch (error) {
    if (isNonRetryable(error)) {
      state.phase = 'rejected';
      state.rejection = { type: error.cause.type ?? 'SsoOnboardingRejected', message: error.cause.message };
      describe();
      await allHandlersFinished();
      return state;
    }
    throw error;
  }
  describe();

  await sendSsoOnboardingEmail({ onboardingId: state.onboardingId!, kind: 'initial' });

  let lastActionAt = Date.now();
  while (inCustomerPhase() && !confirmed) {
    const actions = customerActions;
    const untilExpiry = Date.parse(state.expiresAt!) - Date.now();
    const untilReminder = lastActionAt + timing.reminderAfterMs - Date.now();
    const somethingHappened = () => customerActions !== actions || confirmed || !inCustomerPhase();

    if (!state.reminderSent && untilReminder < untilExpiry) {
      if (await condition(somethingHappened, Math.max(untilReminder, 0))) {
        lastActionAt = Date.now();
        continue;
      }
      const reminder = await sendSsoOnboardingEmail({ onboardingId: state.onboardingId!, kind: 'reminder' });
      state.reminderSent = reminder.status === 'pending';
      describe();
      continue;
    }

    if (await condition(somethingHappened, Math.max(untilExpiry, 0))) {
      lastActionAt = Date.now();
      continue;
    }
    const expired = await endSsoOnboarding({
      onboardingId: state.onboardingId!,
      status: 'expired',
      actor: { type: 'system', userId: null },
    });
    if (expired.status === 'expired') {
      state.phase = 'expired';
    } else if (expired.status === 'awaiting_approval') {
      // The customer confirmed, but the signal was lost; go on to the approval.
      state.phase = 'tested';
      confirmed = true;
    }
    describe();
  }

  if (confirmed && state.phase === 'tested') {
    state.phase = 'awaiting_approval';
    describe();
    if (timing.autoApprove) {
      approvedBy = { type: 'system', userId: null };
    } else {
      await notifySsoOperators({ onboardingId: state.onboardingId! });
    }
    // No time limit: the connection waits for an operator, who approves or cancels it.
    await condition(() => approvedBy !== null || state.phase === 'cancelled');

    if (state.phase === 'awaiting_approval' && approvedBy) {
      try {
        const activated = await activateSsoConnection({ onboardingId: state.onboardingId!, approvedBy });
        if (activated.status === 'completed') {
          state.phase = 'active';
        } else {
          state.phase = activated.status === 'expired' ? 'expired' : 'cancelled';
        }
      } catch (error) {
        if (!isNonRetryable(error)) {
          throw error;
        }
        state.phase = 'rejected';
        state.rejection = { type: error.cause.type ?? 'SsoActivationRejected', message: error.cause.message };
      }
      describe();
    }
  }

  // An update handler may still be finishing its activity; let it reply before the workflow closes.
  await allHandlersFinished();
  log.info('SSO onboarding ended', { phase: state.phase, accountId: input.accountId });
  return state;
}
