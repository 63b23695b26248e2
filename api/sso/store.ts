import type { Knex } from 'knex';

import { recordAuditEvent } from '../../db/audit.js';
import { normalizeEmail } from '../../lib/email-address.js';
import { hashToken, randomToken } from '../../lib/secrets.js';
import { openSecret, sealSecret } from '../../lib/sso/secret-box.js';
import type { ProviderSettings } from '../../lib/sso/oidc.js';
import type { SsoConfig } from '../../lib/sso-config.js';
import { conflict, HttpError } from '../errors.js';

/** An onboarding as the self-service page shows it, found by its link's token. */
export interface OnboardingView {
  id: string;
  accountId: string;
  accountName: string;
  contactEmail: string;
  status: 'pending' | 'awaiting_approval';
  expiresAt: Date;
  workflowId: string;
  workflowRunId: string;
  connection: {
    id: string;
    status: string;
    clientId: string | null;
    issuer: string | null;
    hasSecret: boolean;
    credentialsVersion: number;
    lastTestError: string | null;
  };
}

export interface ConnectionRow {
  id: string;
  account_id: string;
  type: 'okta' | 'google';
  status: string;
  client_id: string | null;
  client_secret_ciphertext: string | null;
  client_secret_key_id: string | null;
  issuer: string | null;
  credentials_version: number;
  allowed_domains: string[];
}

export const LINK_NOT_VALID =
  'This setup link is not valid: it may have expired, been replaced, or the setup may be finished. Ask your account manager for a new link.';

/** Finds the open onboarding whose link token this is; an expired link counts as not found. */
export async function findOnboardingByToken(db: Knex | Knex.Transaction, token: string, options: { forUpdate?: boolean } = {}): Promise<OnboardingView | undefined> {
  const query = db('sso_onboardings')
    .join('accounts', 'accounts.id', 'sso_onboardings.account_id')
    .join('sso_connections', 'sso_connections.id', 'sso_onboardings.connection_id')
    .where('sso_onboardings.token_hash', hashToken(token))
    .whereIn('sso_onboardings.status', ['pending', 'awaiting_approval'])
    .where('sso_onboardings.expires_at', '>', db.fn.now())
    .first(
      'sso_onboardings.*',
      'accounts.name as account_name',
      'sso_connections.status as connection_status',
      'sso_connections.client_id',
      'sso_connections.issuer',
      'sso_connections.client_secret_ciphertext',
      'sso_connections.credentials_version',
      'sso_connections.last_test_error',
    );
  if (options.forUpdate) {
    query.forUpdate();
  }
  const row = await query;
  if (!row) {
    return undefined;
  }
  return {
    id: row.id,
    accountId: row.account_id,
    accountName: row.account_name,
    contactEmail: row.contact_email,
    status: row.status,
    expiresAt: new Date(row.expires_at),
    workflowId: row.workflow_id,
    workflowRunId: row.workflow_run_id,
    connection: {
      id: row.connection_id,
      status: row.connection_status,
      clientId: row.client_id,
      issuer: row.issuer,
      hasSecret: row.client_secret_ciphertext !== null,
      credentialsVersion: row.credentials_version,
      lastTestError: row.last_test_error,
    },
  };
}

function linkNotValid(): HttpError {
  return new HttpError(410, 'link_not_valid', LINK_NOT_VALID);
}

/**
 * Stores new Okta credentials from the self-service page, the client secret encrypted, and sends the
 * connection back to `testing`. An empty secret keeps the stored one. One transaction and one audit event.
 */
export async function submitCredentials(
  db: Knex,
  ssoConfig: SsoConfig,
  token: string,
  credentials: { clientId: string; clientSecret: string | undefined; issuer: string },
): Promise<OnboardingView> {
  return db.transaction(async (trx) => {
    const onboarding = await findOnboardingByToken(trx, token, { forUpdate: true });
    if (!onboarding) {
      throw linkNotValid();
    }
    if (onboarding.status !== 'pending') {
      throw conflict('sso_onboarding_confirmed', 'The setup is already confirmed and waits for approval; the credentials can no longer change.');
    }
    if (!credentials.clientSecret && !onboarding.connection.hasSecret) {
      throw new HttpError(400, 'validation_failed', 'The request is invalid: body.clientSecret is required.', [
        { field: 'body.clientSecret', rule: 'is required' },
      ]);
    }

    const changes: Record<string, unknown> = {
      client_id: credentials.clientId,
      issuer: credentials.issuer,
      status: 'testing',
      credentials_version: trx.raw('credentials_version + 1'),
      last_test_error: null,
      tested_at: null,
      updated_at: trx.fn.now(),
    };
    if (credentials.clientSecret) {
      const sealed = sealSecret(ssoConfig.encryptionKeys, credentials.clientSecret, onboarding.connection.id);
      changes.client_secret_ciphertext = sealed.ciphertext;
      changes.client_secret_key_id = sealed.keyId;
    }
    const [updated] = await trx('sso_connections').where({ id: onboarding.connection.id }).update(changes).returning('credentials_version');

    await recordAuditEvent(trx, {
      actorType: 'invitee',
      actorUserId: null,
      action: 'sso.connection.credentials_submitted',
      targetUserId: null,
      accountId: onboarding.accountId,
      environmentId: null,
      workflowId: onboarding.workflowId,
      details: {
        connectionId: onboarding.connection.id,
        clientId: credentials.clientId,
        issuer: credentials.issuer,
        secretChanged: Boolean(credentials.clientSecret),
      },
      eventKey: `sso.connection.credentials_submitted:${onboarding.connection.id}:${updated.credentials_version}`,
    });
    return (await findOnboardingByToken(trx, token))!;
  });
}

/**
 * Records the outcome of a test sign-in, if the credentials it used are still the current ones. A pass
 * makes the connection `tested`; a failure sends it back to `testing` with the message. Returns false
 * when newer credentials made the test moot.
 */
export async function recordTestOutcome(
  db: Knex,
  input: { connectionId: string; credentialsVersion: number; accountId: string; workflowId: string; passed: boolean; failure?: string },
): Promise<boolean> {
  return db.transaction(async (trx) => {
    const changed = await trx('sso_connections')
      .where({ id: input.connectionId, credentials_version: input.credentialsVersion })
      .whereIn('status', ['testing', 'tested'])
      .update(
        input.passed
          ? { status: 'tested', tested_at: trx.fn.now(), last_test_error: null, updated_at: trx.fn.now() }
          : { status: 'testing', tested_at: null, last_test_error: input.failure ?? null, updated_at: trx.fn.now() },
      );
    if (changed === 0) {
      return false;
    }
    await recordAuditEvent(trx, {
      actorType: 'invitee',
      actorUserId: null,
      action: input.passed ? 'sso.connection.test_passed' : 'sso.connection.test_failed',
      targetUserId: null,
      accountId: input.accountId,
      environmentId: null,
      workflowId: input.workflowId,
      details: { connectionId: input.connectionId, credentialsVersion: input.credentialsVersion, ...(input.failure ? { failure: input.failure } : {}) },
      eventKey: `sso.connection.test:${input.connectionId}:${input.credentialsVersion}:${randomToken()}`,
    });
    return true;
  });
}

/** Records the customer's confirmation, which is allowed once the connection passed its test. */
export async function confirmOnboarding(db: Knex, token: string): Promise<OnboardingView> {
  return db.transaction(async (trx) => {
    const onboarding = await findOnboardingByToken(trx, token, { forUpdate: true });
    if (!onboarding) {
      throw linkNotValid();
    }
    if (onboarding.status === 'awaiting_approval') {
      return onboarding;
    }
    if (onboarding.connection.status !== 'tested') {
      throw conflict('sso_connection_not_tested', 'Test the connection successfully before confirming the setup.');
    }
    await trx('sso_onboardings').where({ id: onboarding.id }).update({ status: 'awaiting_approval', confirmed_at: trx.fn.now() });
    await recordAuditEvent(trx, {
      actorType: 'invitee',
      actorUserId: null,
      action: 'sso.onboarding.confirmed',
      targetUserId: null,
      accountId: onboarding.accountId,
      environmentId: null,
      workflowId: onboarding.workflowId,
      details: { onboardingId: onboarding.id, connectionId: onboarding.connection.id },
      eventKey: `sso.onboarding.confirmed:${onboarding.id}`,
    });
    return { ...onboarding, status: 'awaiting_approval' as const };
  });
}

export async function findConnection(db: Knex, connectionId: string): Promise<ConnectionRow | undefined> {
  return db('sso_connections').where({ id: connectionId }).first();
}

/** Returns the provider settings of a connection, with the client secret decrypted for this one call. */
export function providerSettings(ssoConfig: SsoConfig, connection: ConnectionRow): ProviderSettings {
  if (connection.type === 'google') {
    if (!ssoConfig.google.clientId || !ssoConfig.google.clientSecret) {
      throw new HttpError(503, 'sso_not_configured', 'Google sign-in is not configured on this server (SSO_GOOGLE_CLIENT_ID, SSO_GOOGLE_CLIENT_SECRET).');
    }
    return { issuer: ssoConfig.google.issuer, clientId: ssoConfig.google.clientId, clientSecret: ssoConfig.google.clientSecret };
  }
  if (!connection.issuer || !connection.client_id || !connection.client_secret_ciphertext || !connection.client_secret_key_id) {
    throw conflict('sso_connection_incomplete', 'Enter the client ID, client secret and issuer URI first.');
  }
  const clientSecret = openSecret(
    ssoConfig.encryptionKeys,
    { keyId: connection.client_secret_key_id, ciphertext: connection.client_secret_ciphertext },
    connection.id,
  );
  return { issuer: connection.issuer, clientId: connection.client_id, clientSecret };
}

export interface LoginStateInput {
  state: string;
  nonce: string;
  codeVerifier: string;
  connectionId: string;
  purpose: 'sign_in' | 'connection_test';
  onboardingId: string | null;
  credentialsVersion: number;
  email: string | null;
  ttlMs: number;
}

export async function saveLoginState(db: Knex, input: LoginStateInput): Promise<void> {
  await db('sso_login_states').insert({
    state_hash: hashToken(input.state),
    connection_id: input.connectionId,
    purpose: input.purpose,
    onboarding_id: input.onboardingId,
    credentials_version: input.credentialsVersion,
    email_normalized: input.email === null ? null : normalizeEmail(input.email),
    nonce: input.nonce,
    code_verifier: input.codeVerifier,
    expires_at: new Date(Date.now() + input.ttlMs),
  });
  // Expired states are useless; removing a few on each write keeps the table small without a job.
  await db('sso_login_states')
    .whereIn('state_hash', db('sso_login_states').where('expires_at', '<', db.fn.now()).limit(100).select('state_hash'))
    .delete();
}

/** Marks the state used and returns it, once: a replayed callback finds nothing. */
export async function consumeLoginState(db: Knex, state: string) {
  const [row] = await db('sso_login_states')
    .where({ state_hash: hashToken(state) })
    .whereNull('used_at')
    .where('expires_at', '>', db.fn.now())
    .update({ used_at: db.fn.now() })
    .returning('*');
  return row as
    | {
        connection_id: string;
        purpose: 'sign_in' | 'connection_test';
        onboarding_id: string | null;
        credentials_version: number;
        email_normalized: string | null;
        nonce: string;
        code_verifier: string;
      }
    | undefined;
}

/**
 * Returns false when any account in which the person is an active member has turned password login
 * off; such people sign in only with SSO. The password route calls this after the password check.
 */
export async function passwordLoginAllowed(db: Knex, userId: string): Promise<boolean> {
  const blocking = await db('memberships')
    .join('account_sso_settings', 'account_sso_settings.account_id', 'memberships.account_id')
    .where({ 'memberships.user_id': userId, 'memberships.status': 'active', 'account_sso_settings.password_login_enabled': false })
    .first('memberships.account_id');
  return !blocking;
}
