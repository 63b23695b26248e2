import * as client from 'openid-client';

import { guardedFetch, OutboundUrlError, type OutboundPolicy } from './outbound.js';

/** An OpenID provider as one SSO connection uses it. The secret is decrypted only for the call. */
export interface ProviderSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
}

export interface OidcOptions extends OutboundPolicy {
  /** Accepted difference between clocks for ID token timestamps, in seconds. */
  clockToleranceSeconds: number;
}

/** The values one authorization request needs back at the callback; kept server-side. */
export interface AuthorizationRequest {
  url: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface VerifiedIdentity {
  subject: string;
  email: string | undefined;
  emailVerified: boolean;
  /** Google's hosted-domain claim, present for Google Workspace accounts. */
  hostedDomain: string | undefined;
}

/** Reasons a provider call can fail; each comes with a message that names what to fix. */
export type SsoFailureCode =
  | 'issuer_not_allowed'
  | 'issuer_unreachable'
  | 'issuer_mismatch'
  | 'invalid_client'
  | 'redirect_uri_not_registered'
  | 'clock_skew'
  | 'id_token_invalid'
  | 'code_rejected'
  | 'provider_error'
  | 'email_missing'
  | 'email_not_verified';

export class SsoFailure extends Error {
  constructor(
    readonly code: SsoFailureCode,
    message: string,
  ) {
    super(message);
    this.name = 'SsoFailure';
  }
}

/** Runs OpenID discovery for the issuer and returns a client configuration; the issuer must match exactly. */
export async function discoverProvider(settings: ProviderSettings, options: OidcOptions): Promise<client.Configuration> {
  let issuerUrl: URL;
  try {
    issuerUrl = new URL(settings.issuer);
  } catch {
    throw new SsoFailure('issuer_unreachable', `The issuer URI "${settings.issuer}" is not a valid URL.`);
  }
  try {
    return await client.discovery(
      issuerUrl,
      settings.clientId,
      { client_secret: settings.clientSecret, [client.clockTolerance]: options.clockToleranceSeconds },
      client.ClientSecretBasic(settings.clientSecret),
      {
        [client.customFetch]: guardedFetch(options),
        timeout: Math.ceil(options.timeoutMs / 1000),
        // openid-client skips the ID token signature check for tokens from the token endpoint, relying
        // on TLS; the signature is checked here anyway, against the provider's JWKS.
        execute: options.allowInsecure ? [client.enableNonRepudiationChecks, client.allowInsecureRequests] : [client.enableNonRepudiationChecks],
      },
    );
  } catch (error) {
    throw explainDiscoveryError(error, settings.issuer);
  }
}

export async function buildAuthorizationRequest(
  configuration: client.Configuration,
  redirectUri: string,
  extraParameters: Record<string, string> = {},
): Promise<AuthorizationRequest> {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(configuration, {
    redirect_uri: redirectUri,
    scope: 'openid email profile',
    response_type: 'code',
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extraParameters,
  });
  return { url, state, nonce, codeVerifier };
}

/**
 * Redeems the authorization code and validates the ID token: signature against the provider's JWKS,
 * `iss`, `aud`, `exp`, `nonce` (all by openid-client), and an `iat` no later than now plus the clock
 * tolerance, which openid-client does not check.
 */
export async function completeAuthorization(
  configuration: client.Configuration,
  callbackUrl: URL,
  expected: { state: string; nonce: string; codeVerifier: string },
  options: OidcOptions,
): Promise<VerifiedIdentity> {
  let claims: client.IDToken;
  let accessToken: string;
  try {
    const tokens = await client.authorizationCodeGrant(configuration, callbackUrl, {
      pkceCodeVerifier: expected.codeVerifier,
      expectedState: expected.state,
      expectedNonce: expected.nonce,
      idTokenExpected: true,
    });
    claims = tokens.claims()!;
    accessToken = tokens.access_token;
  } catch (error) {
    throw explainGrantError(error);
  }

  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.iat === 'number' && claims.iat > now + options.clockToleranceSeconds) {
    throw clockSkew(claims.iat - now);
  }

  let email = typeof claims.email === 'string' ? claims.email : undefined;
  let emailVerified = claims.email_verified === true;
  // Some providers keep the email out of the ID token and serve it from the UserInfo endpoint.
  if (email === undefined && configuration.serverMetadata().userinfo_endpoint) {
    try {
      const userInfo = await client.fetchUserInfo(configuration, accessToken, claims.sub);
      email = typeof userInfo.email === 'string' ? userInfo.email : undefined;
      emailVerified = userInfo.email_verified === true;
    } catch (error) {
      throw new SsoFailure('provider_error', `Reading the UserInfo endpoint failed: ${(error as Error).message}.`);
    }
  }

  return {
    subject: claims.sub,
    email,
    emailVerified,
    hostedDomain: typeof claims.hd === 'string' ? claims.hd : undefined,
  };
}

function clockSkew(seconds: number): SsoFailure {
  return new SsoFailure(
    'clock_skew',
    `The ID token's timestamps are off by about ${seconds} s from this server's clock, more than is allowed. Check that the identity provider's and this server's clocks are synchronized (NTP).`,
  );
}

/** Collects the `code` of the error and its causes, as openid-client and oauth4webapi set them. */
function errorCodes(error: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      codes.push(code);
    }
    current = current.cause;
  }
  return codes;
}

function explainDiscoveryError(error: unknown, issuer: string): SsoFailure {
  if (error instanceof SsoFailure) {
    return error;
  }
  const codes = errorCodes(error);
  const outbound = findCause(error, OutboundUrlError);
  if (outbound) {
    return new SsoFailure('issuer_not_allowed', `The issuer URI is not allowed: ${outbound.message}`);
  }
  if (codes.includes('OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED')) {
    const discovered = ((error as { cause?: { body?: { issuer?: unknown } } }).cause?.body?.issuer ?? 'another value') as string;
    return new SsoFailure(
      'issuer_mismatch',
      `The provider at "${issuer}" says its issuer is "${discovered}". Enter exactly that issuer URI (for Okta, the one shown in Security > API > Authorization Servers, or https://<your-domain>.okta.com).`,
    );
  }
  if (codes.includes('OAUTH_TIMEOUT') || codes.includes('OAUTH_ABORT')) {
    return new SsoFailure('issuer_unreachable', `The issuer "${issuer}" did not answer in time. Check the issuer URI and that it is reachable from the internet.`);
  }
  return new SsoFailure(
    'issuer_unreachable',
    `No OpenID configuration could be read from "${issuer}/.well-known/openid-configuration". Check the issuer URI; for Okta it looks like https://<your-domain>.okta.com.`,
  );
}

/** Joins the messages of the causes below `error`, which name the claim or check that failed. */
function causeMessages(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    messages.push(current.message);
    current = current.cause;
  }
  return messages.join('; ');
}

function findCause<T extends Error>(error: unknown, type: new (...args: never[]) => T): T | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    if (current instanceof type) {
      return current;
    }
    current = current.cause;
  }
  return undefined;
}

/** Turns a failed callback or token exchange into a message that names what to fix. */
export function explainGrantError(error: unknown): SsoFailure {
  if (error instanceof SsoFailure) {
    return error;
  }
  if (error instanceof client.AuthorizationResponseError) {
    return explainProviderError(error.error, error.error_description);
  }
  // A token endpoint that rejects client authentication returns 401, with or without a WWW-Authenticate challenge.
  const rejectedClient =
    (error instanceof client.WWWAuthenticateChallengeError &&
      (error.status === 401 || error.cause.some((challenge) => challenge.parameters.error === 'invalid_client'))) ||
    (error instanceof client.ResponseBodyError && error.error === 'invalid_client');
  if (rejectedClient) {
    return new SsoFailure(
      'invalid_client',
      'The identity provider rejected the client ID or client secret. Copy the client secret again from the app integration (General > Client Credentials) and submit it.',
    );
  }
  if (error instanceof client.ResponseBodyError) {
    if (error.error === 'invalid_grant') {
      if (/redirect/i.test(error.error_description ?? '')) {
        return redirectUriNotRegistered();
      }
      return new SsoFailure('code_rejected', 'The sign-in code was already used or has expired. Start the sign-in again.');
    }
    return explainProviderError(error.error, error.error_description);
  }

  const codes = errorCodes(error);
  const message = error instanceof Error ? error.message : String(error);
  const causeMessage = causeMessages(error);
  if (codes.includes('OAUTH_JWT_TIMESTAMP_CHECK_FAILED')) {
    const claims = ((error as { cause?: { cause?: { claims?: { exp?: number } } } }).cause as { claims?: { exp?: number } } | undefined)?.claims;
    const offset = typeof claims?.exp === 'number' ? Math.floor(Date.now() / 1000) - claims.exp : undefined;
    return offset !== undefined ? clockSkew(offset) : clockSkew(0);
  }
  if (codes.includes('OAUTH_KEY_SELECTION_FAILED')) {
    return new SsoFailure(
      'id_token_invalid',
      'No signing key of the identity provider matches the ID token (the token has no usable "kid"). Check the provider\'s signing keys; if it just rotated them, try again in a few minutes.',
    );
  }
  if (codes.includes('OAUTH_JWT_CLAIM_COMPARISON_FAILED')) {
    const claimName = /"(\w+)"/.exec(causeMessage || message)?.[1] ?? 'unknown';
    const hint =
      claimName === 'aud'
        ? 'It was issued for another client; check that the client ID is the one of this app integration.'
        : claimName === 'iss'
          ? 'It was issued by another issuer; check the issuer URI.'
          : claimName === 'nonce'
            ? 'It does not belong to this sign-in attempt; start the sign-in again.'
            : 'Start the sign-in again.';
    return new SsoFailure('id_token_invalid', `The ID token's "${claimName}" claim is not the expected value. ${hint}`);
  }
  if (/signature/i.test(`${message} ${causeMessage}`)) {
    return new SsoFailure('id_token_invalid', 'The ID token\'s signature does not verify with the identity provider\'s published keys.');
  }
  if (codes.includes('OAUTH_TIMEOUT') || message.includes('fetch failed')) {
    return new SsoFailure('issuer_unreachable', 'The identity provider did not answer the token request. Try again; if it persists, check the issuer URI.');
  }
  return new SsoFailure('provider_error', `The sign-in response was not valid: ${causeMessage || message}.`);
}

function redirectUriNotRegistered(): SsoFailure {
  return new SsoFailure(
    'redirect_uri_not_registered',
    'The identity provider does not accept this app\'s redirect URI. Add the sign-in redirect URI shown on the setup page to the app integration\'s "Sign-in redirect URIs".',
  );
}

/** Maps an OAuth `error` parameter from the provider to a message. */
export function explainProviderError(error: string, description: string | undefined): SsoFailure {
  const text = `${error} ${description ?? ''}`;
  if (/redirect_uri/i.test(text)) {
    return redirectUriNotRegistered();
  }
  if (error === 'access_denied') {
    return new SsoFailure('provider_error', 'The sign-in was cancelled at the identity provider, or the person is not assigned to the app integration.');
  }
  return new SsoFailure('provider_error', `The identity provider returned "${error}"${description ? `: ${description}` : ''}.`);
}
