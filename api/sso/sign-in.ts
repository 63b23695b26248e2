import type { Knex } from 'knex';

import { recordAuditEvent } from '../../db/audit.js';
import { normalizeEmail } from '../../lib/email-address.js';
import {
  buildAuthorizationRequest,
  completeAuthorization,
  discoverProvider,
  explainProviderError,
  SsoFailure,
  type OidcOptions,
  type VerifiedIdentity,
} from '../../lib/sso/oidc.js';
import type { SsoConfig } from '../../lib/sso-config.js';
import { consumeLoginState, findConnection, providerSettings, saveLoginState, type ConnectionRow } from './store.js';

/** Result of a callback, which the route turns into a page. */
export type CallbackOutcome =
  | { purpose: 'sign_in'; userId: string; email: string; accountId: string; connectionId: string }
  | {
      purpose: 'connection_test';
      passed: boolean;
      failure?: string;
      connection: ConnectionRow;
      onboardingId: string;
      credentialsVersion: number;
      email: string | undefined;
    };

export function oidcOptions(ssoConfig: SsoConfig): OidcOptions {
  return {
    allowInsecure: ssoConfig.allowInsecureIssuers,
    timeoutMs: ssoConfig.httpTimeoutMs,
    clockToleranceSeconds: Math.floor(ssoConfig.clockToleranceMs / 1000),
  };
}

/**
 * Begins an authorization request for a connection: discovery, then PKCE, state and nonce, kept
 * server-side in `sso_login_states`. Returns the provider URL and the state for the browser cookie.
 */
export async function beginAuthorization(
  db: Knex,
  ssoConfig: SsoConfig,
  redirectUri: string,
  input: { connection: ConnectionRow; purpose: 'sign_in' | 'connection_test'; onboardingId: string | null; email: string | null },
): Promise<{ url: URL; state: string }> {
  const configuration = await discoverProvider(providerSettings(ssoConfig, input.connection), oidcOptions(ssoConfig));
  const extra: Record<string, string> = {};
  if (input.email) {
    extra.login_hint = input.email;
  }
  if (input.connection.type === 'google' && input.connection.allowed_domains.length === 1) {
    extra.hd = input.connection.allowed_domains[0]!;
  }
  const request = await buildAuthorizationRequest(configuration, redirectUri, extra);
  await saveLoginState(db, {
    state: request.state,
    nonce: request.nonce,
    codeVerifier: request.codeVerifier,
    connectionId: input.connection.id,
    purpose: input.purpose,
    onboardingId: input.onboardingId,
    credentialsVersion: input.connection.credentials_version,
    email: input.email,
    ttlMs: ssoConfig.loginStateTtlMs,
  });
  return { url: request.url, state: request.state };
}

function domainOf(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1);
}

/** Checks that the verified identity may sign in through this connection, and finds the member. */
async function authorizeMember(db: Knex, connection: ConnectionRow, expectedEmail: string | null, identity: VerifiedIdentity) {
  const email = normalizeEmail(identity.email!);
  if (expectedEmail !== null && email !== expectedEmail) {
    throw new SsoFailure(
      'provider_error',
      `You signed in at the identity provider as ${identity.email}, but started the sign-in as ${expectedEmail}. Sign in with the same address.`,
    );
  }
  if (connection.type === 'google') {
    const allowed = connection.allowed_domains.map((domain) => domain.toLowerCase());
    const hostedDomain = identity.hostedDomain?.toLowerCase();
    if (!allowed.includes(domainOf(email)) || hostedDomain === undefined || !allowed.includes(hostedDomain)) {
      throw new SsoFailure('provider_error', `Google sign-in for this account is limited to addresses in ${allowed.join(', ')} managed by Google Workspace.`);
    }
  }
  const member = await db('users')
    .join('memberships', 'memberships.user_id', 'users.id')
    .where({ 'users.email_normalized': email, 'memberships.account_id': connection.account_id, 'memberships.status': 'active' })
    .first('users.id', 'users.email');
  if (!member) {
    throw new SsoFailure('provider_error', `${identity.email} is not an active member of this account. Ask an administrator of the account for an invitation.`);
  }
  return member as { id: string; email: string };
}

/**
 * Handles the provider's redirect back: consumes the state once, redeems the code and validates the ID
 * token. A sign-in must come from an active connection and yield the verified email it started with.
 * A connection test must still use the credentials it started with.
 */
export async function completeCallback(db: Knex, ssoConfig: SsoConfig, callbackUrl: URL): Promise<CallbackOutcome> {
  const state = callbackUrl.searchParams.get('state');
  const saved = state ? await consumeLoginState(db, state) : undefined;
  if (!saved) {
    throw new SsoFailure('provider_error', 'This sign-in attempt has expired or was already used. Start the sign-in again.');
  }
  const connection = await findConnection(db, saved.connection_id);
  if (!connection) {
    throw new SsoFailure('provider_error', 'The SSO connection of this sign-in no longer exists.');
  }

  const testFailure = async (failure: SsoFailure): Promise<CallbackOutcome> => ({
    purpose: 'connection_test',
    passed: false,
    failure: failure.message,
    connection,
    onboardingId: saved.onboarding_id!,
    credentialsVersion: saved.credentials_version,
    email: undefined,
  });

  let identity: VerifiedIdentity;
  try {
    if (saved.purpose === 'sign_in' && connection.status !== 'active') {
      throw new SsoFailure('provider_error', 'Single sign-on is not active for this account any more; use another way to sign in.');
    }
    if (saved.purpose === 'connection_test' && connection.credentials_version !== saved.credentials_version) {
      throw new SsoFailure('provider_error', 'The credentials changed after this test started; run the test again.');
    }
    const providerError = callbackUrl.searchParams.get('error');
    if (providerError) {
      throw explainProviderError(providerError, callbackUrl.searchParams.get('error_description') ?? undefined);
    }
    const options = oidcOptions(ssoConfig);
    const configuration = await discoverProvider(providerSettings(ssoConfig, connection), options);
    identity = await completeAuthorization(
      configuration,
      callbackUrl,
      { state: state!, nonce: saved.nonce, codeVerifier: saved.code_verifier },
      options,
    );
    if (!identity.email) {
      throw new SsoFailure('email_missing', 'The identity provider did not return an email address. Grant the app integration the "email" scope.');
    }
    if (!identity.emailVerified) {
      throw new SsoFailure('email_not_verified', `The identity provider has not verified the email address ${identity.email}. Verify it there, then sign in again.`);
    }
  } catch (error) {
    if (error instanceof SsoFailure && saved.purpose === 'connection_test') {
      return testFailure(error);
    }
    throw error;
  }

  if (saved.purpose === 'connection_test') {
    return {
      purpose: 'connection_test',
      passed: true,
      connection,
      onboardingId: saved.onboarding_id!,
      credentialsVersion: saved.credentials_version,
      email: identity.email,
    };
  }

  const member = await authorizeMember(db, connection, saved.email_normalized, identity);
  return { purpose: 'sign_in', userId: member.id, email: member.email, accountId: connection.account_id, connectionId: connection.id };
}

export async function recordSignIn(db: Knex, outcome: Extract<CallbackOutcome, { purpose: 'sign_in' }>, sessionId: string): Promise<void> {
  await recordAuditEvent(db, {
    actorType: 'user',
    actorUserId: outcome.userId,
    action: 'sso.signed_in',
    targetUserId: outcome.userId,
    accountId: outcome.accountId,
    environmentId: null,
    workflowId: null,
    details: { connectionId: outcome.connectionId, sessionId },
    eventKey: `sso.signed_in:${sessionId}`,
  });
}
