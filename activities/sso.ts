import { randomUUID } from 'node:crypto';

import { log } from '@temporalio/activity';
import { recordAuditEvent } from '../db/audit.js';
import { PermanentEmailError } from '../lib/email/index.js';
import { ssoApprovalRequestEmail, ssoOnboardingEmail } from '../lib/email/templates-sso.js';
import { deriveKey, deriveLinkToken, hashToken, randomSalt } from '../lib/secrets.js';
import { loadSsoConfig } from '../lib/sso-config.js';
import type { ActivityDependencies } from './dependencies.js';
import { currentWorkflow, reject, UNIQUE_VIOLATION } from './support.js';

/** The person, operator or system that started or changed an onboarding; never a credential. */
export interface SsoActor {
  type: 'user' | 'operator' | 'system';
  userId: string | null;
  /** The operator key's id, for operator actions. */
  operatorKeyId?: string | null;
}

export interface RecordSsoOnboardingInput {
  accountId: string;
  contactEmail: string;
  startedBy: SsoActor;
  expiresAt: string;
}

export interface RecordedSsoOnboarding {
  onboardingId: string;
  connectionId: string;
  expiresAt: string;
}

export type SsoOnboardingStatus = 'pending' | 'awaiting_approval' | 'completed' | 'expired' | 'cancelled';

/** Failure types of SSO activities that no retry can fix. */
export const SsoRejection = {
  onboardingOpen: 'SsoOnboardingOpen',
  accountNotFound: 'AccountNotFound',
  notFound: 'SsoOnboardingNotFound',
  notTested: 'SsoConnectionNotTested',
  emailRejected: 'EmailRejected',
} as const;

/** Builds the self-service link of an onboarding; the API derives the same token to check it. */
export function ssoOnboardingLink(appBaseUrl: string, tokenKey: Buffer, onboardingId: string, salt: Buffer): string {
  return `${appBaseUrl}/sso/onboarding?token=${encodeURIComponent(deriveLinkToken(tokenKey, onboardingId, salt))}`;
}

/** Key that derives self-service link tokens; a different purpose from invitation links. */
export function ssoOnboardingTokenKey(appSecret: string): Buffer {
  return deriveKey(appSecret, 'sso-onboarding-token');
}

function actorColumns(actor: SsoActor) {
  return {
    actorType: actor.type,
    actorUserId: actor.userId,
    details: actor.operatorKeyId ? { operatorKeyId: actor.operatorKeyId } : {},
  };
}

/** Activities of the Okta onboarding workflow. */
export function createSsoActivities({ config, db, email }: ActivityDependencies) {
  const tokenKey = ssoOnboardingTokenKey(config.appSecret);

  /**
   * Records the onboarding and its link, and creates the Okta connection in `draft`, or reuses the one an
   * expired or cancelled onboarding of the account left unfinished. Safe to retry: a second run of the
   * same workflow run returns what the first stored.
   */
  async function recordSsoOnboarding(input: RecordSsoOnboardingInput): Promise<RecordedSsoOnboarding> {
    const { workflowId, runId } = currentWorkflow();

    return db.transaction(async (trx) => {
      const earlier = await trx('sso_onboardings').where({ workflow_run_id: runId }).first();
      if (earlier) {
        return { onboardingId: earlier.id, connectionId: earlier.connection_id, expiresAt: new Date(earlier.expires_at).toISOString() };
      }
      const account = await trx('accounts').where({ id: input.accountId }).first('id');
      if (!account) {
        throw reject(SsoRejection.accountNotFound, `Account "${input.accountId}" does not exist.`);
      }

      const unfinished = await trx('sso_onboardings')
        .join('sso_connections', 'sso_connections.id', 'sso_onboardings.connection_id')
        .where('sso_onboardings.account_id', input.accountId)
        .whereIn('sso_connections.status', ['draft', 'testing', 'tested'])
        .orderBy('sso_onboardings.created_at', 'desc')
        .first('sso_connections.id');
      let connectionId: string = unfinished?.id;
      if (!connectionId) {
        [{ id: connectionId }] = await trx('sso_connections').insert({ account_id: input.accountId, type: 'okta', status: 'draft' }).returning('id');
      }

      const onboardingId = randomUUID();
      const salt = randomSalt();
      try {
        await trx('sso_onboardings').insert({
          id: onboardingId,
          account_id: input.accountId,
          connection_id: connectionId,
          contact_email: input.contactEmail.trim(),
          token_hash: hashToken(deriveLinkToken(tokenKey, onboardingId, salt)),
          token_salt: salt,
          expires_at: input.expiresAt,
          workflow_id: workflowId,
          workflow_run_id: runId,
          started_by: input.startedBy.type,
          started_by_user_id: input.startedBy.userId,
        });
      } catch (error) {
        if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
          throw reject(SsoRejection.onboardingOpen, 'This account already has an SSO onboarding in progress.');
        }
        throw error;
      }

      const actor = actorColumns(input.startedBy);
      await recordAuditEvent(trx, {
        ...actor,
        action: 'sso.onboarding.started',
        targetUserId: null,
        accountId: input.accountId,
        environmentId: null,
        workflowId,
        details: { ...actor.details, onboardingId, connectionId, expiresAt: input.expiresAt },
        eventKey: `sso.onboarding.started:${onboardingId}`,
      });
      return { onboardingId, connectionId, expiresAt: new Date(input.expiresAt).toISOString() };
    });
  }

  /** Claims an email step; returns undefined when an earlier attempt already sent it. */
  async function claimEmailStep(onboardingId: string, step: string): Promise<{ emailId: string } | undefined> {
    await db('sso_onboarding_emails').insert({ onboarding_id: onboardingId, step, status: 'sending' }).onConflict(['onboarding_id', 'step']).ignore();
    const row = await db('sso_onboarding_emails').where({ onboarding_id: onboardingId, step }).first('id', 'status');
    return row.status === 'sent' ? undefined : { emailId: row.id };
  }

  async function deliver(emailId: string, message: Parameters<typeof email.send>[0]): Promise<void> {
    let messageId: string | null;
    try {
      ({ messageId } = await email.send(message));
    } catch (error) {
      if (error instanceof PermanentEmailError) {
        throw reject(SsoRejection.emailRejected, error.message);
      }
      throw error;
    }
    await db('sso_onboarding_emails').where({ id: emailId }).update({ status: 'sent', sent_at: db.fn.now(), provider_message_id: messageId });
  }

  /**
   * Mails the self-service link (`initial`) or repeats it (`reminder`). The link is derived from the
   * stored salt, so a retry mails the same link. Returns the onboarding's status; no email goes out
   * once the customer's part has ended.
   */
  async function sendSsoOnboardingEmail(input: { onboardingId: string; kind: 'initial' | 'reminder' }): Promise<{ status: SsoOnboardingStatus }> {
    const onboarding = await db('sso_onboardings')
      .join('accounts', 'accounts.id', 'sso_onboardings.account_id')
      .where('sso_onboardings.id', input.onboardingId)
      .first('sso_onboardings.*', 'accounts.name as account_name');
    if (!onboarding) {
      throw reject(SsoRejection.notFound, `SSO onboarding ${input.onboardingId} does not exist.`);
    }
    if (onboarding.status !== 'pending') {
      return { status: onboarding.status };
    }
    const claimed = await claimEmailStep(onboarding.id, input.kind);
    if (!claimed) {
      return { status: 'pending' };
    }

    const link = ssoOnboardingLink(config.appBaseUrl, tokenKey, onboarding.id, onboarding.token_salt);
    await deliver(
      claimed.emailId,
      ssoOnboardingEmail({ kind: input.kind, to: onboarding.contact_email, accountName: onboarding.account_name, link, expiresAt: new Date(onboarding.expires_at) }),
    );
    log.info('SSO onboarding email sent', { onboardingId: onboarding.id, kind: input.kind });
    return { status: 'pending' };
  }

  /** Asks the operators (OPERATOR_EMAIL) to approve a tested connection; only logs when that is unset. */
  async function notifySsoOperators(input: { onboardingId: string }): Promise<void> {
    const ssoConfig = loadSsoConfig();
    const onboarding = await db('sso_onboardings')
      .join('accounts', 'accounts.id', 'sso_onboardings.account_id')
      .join('sso_connections', 'sso_connections.id', 'sso_onboardings.connection_id')
      .where('sso_onboardings.id', input.onboardingId)
      .first('sso_onboardings.id', 'sso_onboardings.account_id', 'accounts.name as account_name', 'sso_connections.issuer');
    if (!onboarding) {
      throw reject(SsoRejection.notFound, `SSO onboarding ${input.onboardingId} does not exist.`);
    }
    if (!ssoConfig.operatorEmail) {
      log.warn('OPERATOR_EMAIL is not set, so no operator was emailed about the SSO connection awaiting approval', { onboardingId: onboarding.id });
      return;
    }
    const claimed = await claimEmailStep(onboarding.id, 'operator-approval');
    if (!claimed) {
      return;
    }
    await deliver(
      claimed.emailId,
      ssoApprovalRequestEmail({
        to: ssoConfig.operatorEmail,
        accountId: onboarding.account_id,
        accountName: onboarding.account_name,
        issuer: onboarding.issuer ?? '(none)',
        approveUrl: `${config.appBaseUrl}/v1/operator/sso/onboardings/${onboarding.account_id}/approve`,
      }),
    );
  }

  /**
   * Makes the tested connection `active` and completes the onboarding. A connection that is no longer
   * `tested` (new credentials arrived meanwhile) is rejected instead.
   */
  async function activateSsoConnection(input: { onboardingId: string; approvedBy: SsoActor }): Promise<{ status: SsoOnboardingStatus }> {
    const { workflowId } = currentWorkflow();
    return db.transaction(async (trx) => {
      const onboarding = await trx('sso_onboardings').where({ id: input.onboardingId }).forUpdate().first();
      if (!onboarding) {
        throw reject(SsoRejection.notFound, `SSO onboarding ${input.onboardingId} does not exist.`);
      }
      if (onboarding.status === 'completed' || onboarding.status === 'expired' || onboarding.status === 'cancelled') {
        return { status: onboarding.status };
      }
      const connection = await trx('sso_connections').where({ id: onboarding.connection_id }).forUpdate().first('status');
      if (connection.status !== 'tested' && connection.status !== 'active') {
        throw reject(SsoRejection.notTested, `The connection is ${connection.status}, not tested, so it cannot be activated.`);
      }
      await trx('sso_connections')
        .where({ id: onboarding.connection_id })
        .update({ status: 'active', activated_at: trx.fn.now(), updated_at: trx.fn.now() });
      await trx('sso_onboardings').where({ id: onboarding.id }).update({ status: 'completed', token_hash: null, ended_at: trx.fn.now() });
      const actor = actorColumns(input.approvedBy);
      await recordAuditEvent(trx, {
        ...actor,
        action: 'sso.connection.activated',
        targetUserId: null,
        accountId: onboarding.account_id,
        environmentId: null,
        workflowId,
        details: { ...actor.details, onboardingId: onboarding.id, connectionId: onboarding.connection_id },
        eventKey: `sso.connection.activated:${onboarding.id}`,
      });
      return { status: 'completed' as const };
    });
  }

  /**
   * Ends an open onboarding as `expired` or `cancelled`; the link stops working and the connection stays
   * as it is. Expiry leaves a confirmed onboarding (`awaiting_approval`) open and returns that status.
   */
  async function endSsoOnboarding(input: {
    onboardingId: string;
    status: 'expired' | 'cancelled';
    actor: SsoActor;
  }): Promise<{ status: SsoOnboardingStatus }> {
    const { workflowId } = currentWorkflow();
    return db.transaction(async (trx) => {
      const onboarding = await trx('sso_onboardings').where({ id: input.onboardingId }).forUpdate().first();
      if (!onboarding) {
        throw reject(SsoRejection.notFound, `SSO onboarding ${input.onboardingId} does not exist.`);
      }
      if (onboarding.status !== 'pending' && onboarding.status !== 'awaiting_approval') {
        return { status: onboarding.status };
      }
      // Expiry covers only the customer's part; a confirmed onboarding waits for the operators instead.
      if (input.status === 'expired' && onboarding.status === 'awaiting_approval') {
        return { status: onboarding.status };
      }
      await trx('sso_onboardings').where({ id: onboarding.id }).update({ status: input.status, token_hash: null, ended_at: trx.fn.now() });
      const actor = actorColumns(input.actor);
      await recordAuditEvent(trx, {
        ...actor,
        action: `sso.onboarding.${input.status}`,
        targetUserId: null,
        accountId: onboarding.account_id,
        environmentId: null,
        workflowId,
        details: { ...actor.details, onboardingId: onboarding.id },
        eventKey: `sso.onboarding.${input.status}:${onboarding.id}`,
      });
      return { status: input.status };
    });
  }

  return { recordSsoOnboarding, sendSsoOnboardingEmail, notifySsoOperators, activateSsoConnection, endSsoOnboarding };
}

export type SsoActivities = ReturnType<typeof createSsoActivities>;

