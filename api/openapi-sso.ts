import { z } from 'zod';
import type { ZodOpenApiPathsObject, ZodOpenApiResponsesObject } from 'zod-openapi';

import { errorSchema, idempotencyHeader } from './schemas.js';

/** OpenAPI paths of single sign-on, for buildOpenApiDocument to merge into `paths`. */

const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });
const failure = (description: string) => ({ description, ...json(errorSchema) });

const accountPath = z.object({ accountId: z.string().meta({ description: 'Account id, for example `demo`.' }) });

const administratorFailures: ZodOpenApiResponsesObject = {
  '401': failure('Missing, unknown or revoked credential.'),
  '403': failure('The caller is neither an operator nor an active administrator of the account.'),
};

const onboardingStateSchema = z
  .object({
    phase: z.enum(['starting', 'waiting_for_credentials', 'testing', 'tested', 'awaiting_approval', 'active', 'expired', 'cancelled', 'rejected']),
    onboardingId: z.uuid().nullable(),
    connectionId: z.uuid().nullable(),
    expiresAt: z.iso.datetime().nullable(),
    reminderSent: z.boolean(),
    lastTestFailure: z.string().nullable(),
    rejection: z.object({ type: z.string(), message: z.string() }).nullable(),
  })
  .meta({ id: 'SsoOnboardingState' });

const onboardingResponseSchema = z.object({
  workflowId: z.string().meta({ description: '`sso-onboarding-<accountId>`.' }),
  redirectUri: z.url().meta({ description: 'The sign-in redirect URI to register at the identity provider: `APP_BASE_URL/v1/auth/sso/callback`.' }),
  state: onboardingStateSchema,
});

const connectionSchema = z
  .object({
    id: z.uuid(),
    type: z.enum(['okta', 'google']),
    status: z.enum(['draft', 'testing', 'tested', 'active', 'disabled']),
    clientId: z.string().nullable(),
    issuer: z.string().nullable(),
    hasClientSecret: z.boolean().meta({ description: 'The secret itself is never returned.' }),
    allowedDomains: z.array(z.string()),
    lastTestError: z.string().nullable(),
    testedAt: z.iso.datetime().nullable(),
    activatedAt: z.iso.datetime().nullable(),
  })
  .meta({ id: 'SsoConnection' });

const selfServiceView = z.object({
  accountId: z.string(),
  status: z.enum(['pending', 'awaiting_approval']),
  expiresAt: z.iso.datetime(),
  redirectUri: z.url(),
  connection: z.object({ id: z.uuid(), status: z.string(), clientId: z.string().nullable(), issuer: z.string().nullable(), lastTestError: z.string().nullable() }),
});

const tokenBody = z.object({
  token: z.string().max(200).meta({ description: 'The token of the emailed setup link.' }),
  csrfToken: z.string().max(200).optional().meta({ description: 'Required for form posts from the setup page; JSON callers omit it.' }),
});

export const ssoOpenApiPaths: ZodOpenApiPathsObject = {
  '/v1/accounts/{accountId}/sso/okta/onboarding': {
    post: {
      summary: 'Start Okta onboarding',
      description:
        'Starts the onboarding workflow, which emails a self-service setup link to the customer contact. One onboarding per account runs at a time. An `Idempotency-Key` header makes a retry return the first response instead of a 409.',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath, header: idempotencyHeader },
      requestBody: json(z.strictObject({ contactEmail: z.email().max(254) })),
      responses: {
        '202': { description: 'Onboarding recorded; the email goes out next.', ...json(onboardingResponseSchema) },
        '400': failure('Invalid body.'),
        ...administratorFailures,
        '404': failure('Unknown account (operators only).'),
        '409': failure('An onboarding is already running, an active Okta connection exists, or the Idempotency-Key is in use.'),
        '422': failure('The Idempotency-Key was used for a different request.'),
        '503': failure('SSO_ENCRYPTION_KEYS is not set.'),
      },
    },
    get: {
      summary: 'Current onboarding step',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath },
      responses: { '200': { description: 'The workflow state.', ...json(onboardingResponseSchema) }, ...administratorFailures, '404': failure('No onboarding.') },
    },
  },
  '/v1/accounts/{accountId}/sso/connections': {
    get: {
      summary: 'List SSO connections',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath },
      responses: {
        '200': { description: 'The connections, without secrets.', ...json(z.object({ redirectUri: z.url(), connections: z.array(connectionSchema) })) },
        ...administratorFailures,
      },
    },
  },
  '/v1/accounts/{accountId}/sso/google': {
    put: {
      summary: 'Configure Google sign-in',
      description: 'Creates or updates the account\'s Google connection, active at once. Sign-in is limited to these domains, checked on the email and the `hd` claim.',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath },
      requestBody: json(z.strictObject({ allowedDomains: z.array(z.string()).min(1).max(50) })),
      responses: {
        '200': { description: 'The Google connection.', ...json(z.object({ id: z.uuid(), type: z.literal('google'), status: z.string(), allowedDomains: z.array(z.string()) })) },
        '400': failure('Invalid domain.'),
        ...administratorFailures,
      },
    },
  },
  '/v1/accounts/{accountId}/settings': {
    put: {
      summary: 'Account sign-in settings',
      description: '`passwordLoginEnabled: false` makes members of the account sign in only with SSO.',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath },
      requestBody: json(z.strictObject({ passwordLoginEnabled: z.boolean() })),
      responses: {
        '200': { description: 'Saved.', ...json(z.object({ accountId: z.string(), passwordLoginEnabled: z.boolean() })) },
        '400': failure('Invalid body.'),
        ...administratorFailures,
        '409': failure('Password login cannot be turned off while no SSO connection is active.'),
      },
    },
  },
  '/v1/operator/sso/onboardings/{accountId}/approve': {
    post: {
      summary: 'Approve an SSO connection',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath },
      responses: {
        '200': { description: 'The connection is active.', ...json(z.object({ state: onboardingStateSchema })) },
        '401': failure('Missing or unknown operator key.'),
        '403': failure('Not an operator key.'),
        '404': failure('No running onboarding.'),
        '409': failure('The customer has not confirmed yet.'),
      },
    },
  },
  '/v1/operator/sso/onboardings/{accountId}/cancel': {
    post: {
      summary: 'Cancel an SSO onboarding',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath },
      responses: {
        '200': { description: 'Cancelled; the link stops working.', ...json(z.object({ state: onboardingStateSchema })) },
        '401': failure('Missing or unknown operator key.'),
        '403': failure('Not an operator key.'),
        '404': failure('No running onboarding.'),
        '409': failure('Already approved or ended.'),
      },
    },
  },
  '/sso/onboarding': {
    get: {
      summary: 'Self-service setup page',
      requestParams: { query: z.object({ token: z.string() }) },
      responses: { '200': html('The setup page; opening it changes nothing.'), '410': html('The link expired or the setup ended.') },
    },
  },
  '/v1/sso/onboarding/credentials': {
    post: {
      summary: 'Submit Okta credentials',
      description: 'Stores the client ID, issuer and (encrypted) client secret; an empty secret keeps the stored one. The connection goes back to `testing`.',
      requestBody: json(tokenBody.extend({ clientId: z.string().max(255), clientSecret: z.string().max(1000).optional(), issuer: z.url() })),
      responses: {
        '200': { description: 'Saved (form posts get the page back).', ...json(selfServiceView) },
        '400': failure('Invalid field.'),
        '403': failure('Form post without a valid CSRF token.'),
        '409': failure('The setup is already confirmed.'),
        '410': failure('The link is not valid.'),
      },
    },
  },
  '/v1/sso/onboarding/test': {
    post: {
      summary: 'Start a test sign-in',
      description: 'Runs discovery of the issuer and returns the provider URL (form posts get a page that continues there). Sets the `lc_sso_state` cookie.',
      requestBody: json(tokenBody),
      responses: {
        '200': { description: 'Go to `authorizationUrl`.', ...json(z.object({ authorizationUrl: z.url() })) },
        '403': failure('Form post without a valid CSRF token.'),
        '409': failure('Credentials missing, or the setup is already confirmed.'),
        '410': failure('The link is not valid.'),
        '422': failure('Discovery failed; `code` is issuer_unreachable, issuer_mismatch or issuer_not_allowed and the message says what to fix.'),
      },
    },
  },
  '/v1/sso/onboarding/confirm': {
    post: {
      summary: 'Confirm the setup',
      requestBody: json(tokenBody),
      responses: {
        '200': { description: 'Confirmed; waits for an operator.', ...json(selfServiceView) },
        '403': failure('Form post without a valid CSRF token.'),
        '409': failure('The connection has not passed its test.'),
        '410': failure('The link is not valid.'),
      },
    },
  },
  '/login': {
    get: {
      summary: 'Sign-in page',
      requestParams: { query: z.object({ email: z.string().optional() }) },
      responses: { '200': html('Email first; then the account\'s SSO options and, where allowed, the password form.'), '400': html('Invalid email.') },
    },
  },
  '/v1/auth/sso/start': {
    get: {
      summary: 'Start SSO sign-in',
      requestParams: { query: z.object({ email: z.email(), connection: z.uuid() }) },
      responses: {
        '303': { description: 'Redirect to the provider, with PKCE, state and nonce; sets the `lc_sso_state` cookie.' },
        '400': html('Missing or invalid parameters.'),
        '404': html('The connection is not active.'),
        '502': html('Discovery of the provider failed.'),
      },
    },
  },
  '/v1/auth/sso/callback': {
    get: {
      summary: 'SSO redirect URI',
      description:
        'Redeems the code and validates the ID token. A sign-in sets the `lc_session` cookie (HttpOnly, SameSite=Lax, Secure on https) holding a session token; a connection test records its result.',
      requestParams: { query: z.object({ state: z.string(), code: z.string().optional(), error: z.string().optional() }) },
      responses: {
        '200': html('Signed in, or the connection test passed.'),
        '400': html('The state does not match this browser\'s sign-in.'),
        '401': html('Sign-in rejected; the page says why.'),
        '422': html('The connection test failed; the page says what to fix.'),
      },
    },
  },
};
