import { ApplicationFailure } from '@temporalio/common';
import {
  type Client,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';

import type { SsoActor } from '../../activities/sso.js';
import { SsoRejection } from '../../activities/sso.js';
import type { Config } from '../../lib/config.js';
import { lifecycleSearchAttributes } from '../../workflows/search-attributes.js';
import type { SsoConfig } from '../../lib/sso-config.js';
import {
  approveSsoOnboardingUpdate,
  cancelSsoOnboardingUpdate,
  ssoConnectionTestedSignal,
  ssoCredentialsSubmittedSignal,
  ssoCustomerConfirmedSignal,
  SsoOnboardingFailure,
  ssoOnboardingRecordedUpdate,
  ssoOnboardingStateQuery,
  ssoOnboardingWorkflow,
  ssoOnboardingWorkflowId,
  type SsoOnboardingState,
} from '../../workflows/sso.js';
import { conflict, type HttpError, notFound } from '../errors.js';

function toHttpError(error: unknown, accountId: string): HttpError | undefined {
  if (error instanceof WorkflowExecutionAlreadyStartedError) {
    return conflict('sso_onboarding_in_progress', `Account "${accountId}" already has an SSO onboarding in progress; cancel it first to start again.`);
  }
  if (error instanceof WorkflowNotFoundError) {
    return notFound(`A running SSO onboarding for account "${accountId}"`);
  }
  if (!(error instanceof WorkflowUpdateFailedError) || !(error.cause instanceof ApplicationFailure)) {
    return undefined;
  }
  switch (error.cause.type) {
    case SsoRejection.onboardingOpen:
      return conflict('sso_onboarding_in_progress', error.cause.message);
    case SsoRejection.accountNotFound:
      return notFound(`Account "${accountId}"`);
    case SsoOnboardingFailure.notAwaitingApproval:
      return conflict('sso_onboarding_not_awaiting_approval', error.cause.message);
    case SsoOnboardingFailure.alreadyEnded:
      return conflict('sso_onboarding_ended', error.cause.message);
    default:
      return undefined;
  }
}

/** Starts and drives the Okta onboarding workflow of an account. */
export class SsoOnboardingWorkflows {
  constructor(
    private readonly temporal: Client,
    private readonly config: Config,
    private readonly ssoConfig: SsoConfig,
  ) {}

  private async translate<T>(accountId: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw toHttpError(error, accountId) ?? error;
    }
  }

  /**
   * Starts the onboarding and waits until it is recorded (Update-with-Start). One onboarding per account
   * runs at a time: the id conflict policy is FAIL. After one has ended (expired, cancelled, completed)
   * a new run may start: the id reuse policy is ALLOW_DUPLICATE.
   */
  async start(input: { accountId: string; contactEmail: string; startedBy: SsoActor }): Promise<{ workflowId: string; state: SsoOnboardingState }> {
    const workflowId = ssoOnboardingWorkflowId(input.accountId);
    const startWorkflowOperation = new WithStartWorkflowOperation(ssoOnboardingWorkflow, {
      workflowId,
      taskQueue: this.config.temporal.taskQueue,
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: `Okta SSO onboarding for ${input.accountId}`,
      typedSearchAttributes: lifecycleSearchAttributes({ kind: 'sso-onboarding', accountId: input.accountId }),
      args: [{ ...input, timing: { ...this.ssoConfig.onboarding, autoApprove: this.ssoConfig.autoApprove } }],
    });
    const state = await this.translate(input.accountId, () =>
      this.temporal.workflow.executeUpdateWithStart(ssoOnboardingRecordedUpdate, { startWorkflowOperation }),
    );
    return { workflowId, state };
  }

  async state(accountId: string): Promise<SsoOnboardingState> {
    const handle = this.temporal.workflow.getHandle(ssoOnboardingWorkflowId(accountId));
    return this.translate(accountId, () => handle.query(ssoOnboardingStateQuery));
  }

  async approve(accountId: string, actor: SsoActor): Promise<SsoOnboardingState> {
    const handle = this.temporal.workflow.getHandle(ssoOnboardingWorkflowId(accountId));
    return this.translate(accountId, () => handle.executeUpdate(approveSsoOnboardingUpdate, { args: [{ actor }] }));
  }

  async cancel(accountId: string, actor: SsoActor): Promise<SsoOnboardingState> {
    const handle = this.temporal.workflow.getHandle(ssoOnboardingWorkflowId(accountId));
    return this.translate(accountId, () => handle.executeUpdate(cancelSsoOnboardingUpdate, { args: [{ actor }] }));
  }

  /** Signals the run that owns the onboarding; the database change is already committed. */
  async notify(
    workflowId: string,
    runId: string,
    event: { kind: 'credentials' } | { kind: 'tested'; passed: boolean; failure?: string } | { kind: 'confirmed' },
  ): Promise<void> {
    const handle = this.temporal.workflow.getHandle(workflowId, runId);
    if (event.kind === 'credentials') {
      await handle.signal(ssoCredentialsSubmittedSignal);
    } else if (event.kind === 'tested') {
      await handle.signal(ssoConnectionTestedSignal, { passed: event.passed, ...(event.failure ? { failure: event.failure } : {}) });
    } else {
      await handle.signal(ssoCustomerConfirmedSignal);
    }
  }
}
