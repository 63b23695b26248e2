import { Router, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import { z } from 'zod';

import { ssoOnboardingLink, ssoOnboardingTokenKey } from '../../activities/sso.js';
import { recordAuditEvent } from '../../db/audit.js';
import { emailSchema, normalizeEmail } from '../../lib/email-address.js';
import { deriveKey, hashToken } from '../../lib/secrets.js';
import { SsoFailure } from '../../lib/sso/oidc.js';
import { SecretBoxError } from '../../lib/sso/secret-box.js';
import { loadSsoConfig, ssoRedirectUri } from '../../lib/sso-config.js';
import { authenticate, requireOperator } from '../auth.js';
import { conflict, HttpError, parseOrThrow } from '../errors.js';
import { withIdempotency } from '../idempotency.js';
import { createSession } from '../sessions.js';
import { requireAccountAdministratorOrOperator, ssoActor } from '../sso/access.js';
import { clearCookie, cookieOptions, readCookie, SESSION_COOKIE, STATE_COOKIE } from '../sso/cookies.js';
import { issueCsrfToken, verifyCsrfToken } from '../sso/csrf.js';
import { SsoOnboardingWorkflows } from '../sso/onboarding-workflows.js';
import { continueToProviderPage, loginPage, messagePage, onboardingPage, type LoginOption } from '../sso/pages.js';
import { beginAuthorization, completeCallback, recordSignIn } from '../sso/sign-in.js';
import {
  confirmOnboarding,
  findConnection,
  findOnboardingByToken,
  LINK_NOT_VALID,
  passwordLoginAllowed,
  recordTestOutcome,
  submitCredentials,
  type OnboardingView,
} from '../sso/store.js';
import type { RouterDependencies } from './dependencies.js';

const STATE_COOKIE_PATH = '/v1/auth/sso';

const startOnboardingSchema = z.strictObject({ contactEmail: emailSchema });

const clientIdSchema = z.string().trim().min(1, 'must not be empty').max(255, 'must be at most 255 characters').regex(/^\S+$/, 'must not contain spaces');
const domainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .max(253, 'must be at most 253 characters')
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, 'must be a domain name such as example.com');

const googleSchema = z.strictObject({
  allowedDomains: z.array(domainSchema).min(1, 'must contain at least one domain').max(50, 'must contain at most 50 domains'),
});
const settingsSchema = z.strictObject({ passwordLoginEnabled: z.boolean() });
const tokenFormSchema = z.object({ token: z.string().max(200), csrfToken: z.string().max(200).optional() });
const loginQuerySchema = z.object({ email: z.string().max(254).optional() });
const startQuerySchema = z.object({ email: emailSchema, connection: z.uuid('must be a connection id') });

function issuerSchema(allowInsecure: boolean) {
  return z
    .string()
    .trim()
    .max(2000, 'must be at most 2000 characters')
    .superRefine((text, context) => {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        context.addIssue({ code: 'custom', message: 'must be a URL such as https://your-domain.okta.com' });
        return;
      }
      const insecureAllowed = allowInsecure && url.protocol === 'http:';
      if (url.protocol !== 'https:' && !insecureAllowed) {
        context.addIssue({ code: 'custom', message: 'must start with https://' });
      } else if (url.search || url.hash || url.username || url.password) {
        context.addIssue({ code: 'custom', message: 'must not contain a query, fragment, user name or password' });
      }
    })
    .transform((text) => text.replace(/\/+$/, ''));
}

function noStore(response: Response): void {
  response.setHeader('Cache-Control', 'no-store');
}

function isFormPost(request: Request): boolean {
  return request.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded';
}

/** Single sign-on: connections, Okta onboarding, its self-service page, and sign-in, mounted at the app root. */
export function ssoRouter(dependencies: RouterDependencies): Router {
  const { config, db, temporal, logger } = dependencies;
  const ssoConfig = loadSsoConfig();
  const workflows = new SsoOnboardingWorkflows(temporal, config, ssoConfig);
  const redirectUri = ssoRedirectUri(config.appBaseUrl);
  const linkKey = ssoOnboardingTokenKey(config.appSecret);
  const csrfKey = deriveKey(config.appSecret, 'sso-csrf');
  const credentialsSchema = z.object({
    token: z.string().max(200),
    csrfToken: z.string().max(200).optional(),
    clientId: clientIdSchema,
    clientSecret: z.string().max(1000, 'must be at most 1000 characters').optional(),
    issuer: issuerSchema(ssoConfig.allowInsecureIssuers),
  });

  const router = Router();
  const administered = [authenticate(db, config), requireAccountAdministratorOrOperator(db)];

  // The same per-address limit as the invitation links, for routes that take a setup token or start a sign-in.
  // NOTE: the memory store counts per API process, like the app's other limiters.
  const tokenRouteLimiter = rateLimit({
    windowMs: 60_000,
    limit: config.tokenRateLimitPerMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (_request, _response, next) => {
      next(new HttpError(429, 'rate_limited', 'Too many attempts; wait a minute and try again.', null, { 'Retry-After': '60' }));
    },
  });
  router.use(['/sso/onboarding', '/v1/sso/onboarding', '/v1/auth/sso'], tokenRouteLimiter);

  /** Signals the workflow after a committed change; a lost signal is logged, and the page still works. */
  function notifyWorkflow(request: Request, onboarding: { workflowId: string; workflowRunId: string }, event: Parameters<SsoOnboardingWorkflows['notify']>[2]) {
    workflows.notify(onboarding.workflowId, onboarding.workflowRunId, event).catch((error: unknown) => {
      (request.log ?? logger).warn({ err: error, workflowId: onboarding.workflowId, event: event.kind }, 'could not signal the SSO onboarding workflow');
    });
  }

  function csrfTokens(token: string) {
    const binding = hashToken(token);
    return {
      credentials: issueCsrfToken(csrfKey, 'credentials', binding),
      test: issueCsrfToken(csrfKey, 'test', binding),
      confirm: issueCsrfToken(csrfKey, 'confirm', binding),
    };
  }

  function renderOnboarding(response: Response, token: string, onboarding: OnboardingView, notice?: { kind: 'error' | 'ok'; text: string }, status = 200) {
    noStore(response);
    response
      .status(status)
      .type('html')
      .send(onboardingPage({ token, onboarding, redirectUri, csrf: csrfTokens(token), ...(notice ? { notice } : {}) }));
  }

  function onboardingJson(onboarding: OnboardingView) {
    const { connection } = onboarding;
    return {
      accountId: onboarding.accountId,
      status: onboarding.status,
      expiresAt: onboarding.expiresAt.toISOString(),
      redirectUri,
      connection: { id: connection.id, status: connection.status, clientId: connection.clientId, issuer: connection.issuer, lastTestError: connection.lastTestError },
    };
  }

  /** Parses a self-service POST and checks its CSRF token when it comes from the page's form. */
  function parseSelfServiceForm<T extends z.ZodType>(request: Request, schema: T, purpose: string): z.output<T> & { token: string } {
    const body = parseOrThrow(schema, request.body, 'body') as z.output<T> & { token: string; csrfToken?: string };
    // JSON bodies cannot be sent cross-site without CORS, so only form posts need the token.
    if (isFormPost(request) && !verifyCsrfToken(csrfKey, purpose, hashToken(body.token), body.csrfToken)) {
      throw new HttpError(403, 'csrf_failed', 'The form has expired or did not come from the setup page. Reload the page and try again.');
    }
    return body;
  }

  // --- Account administrators and operators -------------------------------------------------------

  router.post('/v1/accounts/:accountId/sso/okta/onboarding', ...administered, async (request, response) => {
    const body = parseOrThrow(startOnboardingSchema, request.body, 'body');
    if (ssoConfig.encryptionKeys.length === 0) {
      throw new HttpError(503, 'sso_not_configured', 'Single sign-on is not configured on this server: set SSO_ENCRYPTION_KEYS.');
    }
    const { accountId } = request.params as { accountId: string };
    const result = await withIdempotency(db, request, async () => {
      if (await db('sso_connections').where({ account_id: accountId, type: 'okta', status: 'active' }).first('id')) {
        throw conflict('sso_connection_active', `Account "${accountId}" already has an active Okta connection.`);
      }
      const { workflowId, state } = await workflows.start({ accountId, contactEmail: body.contactEmail, startedBy: ssoActor(response) });
      return { status: 202, body: { workflowId, redirectUri, state } };
    });
    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  router.get('/v1/accounts/:accountId/sso/okta/onboarding', ...administered, async (request, response) => {
    const { accountId } = request.params as { accountId: string };
    response.json({ workflowId: `sso-onboarding-${accountId}`, redirectUri, state: await workflows.state(accountId) });
  });

  router.get('/v1/accounts/:accountId/sso/connections', ...administered, async (request, response) => {
    const rows = await db('sso_connections').where({ account_id: (request.params as { accountId: string }).accountId }).orderBy('created_at');
    response.json({
      redirectUri,
      connections: rows.map((row) => ({
        id: row.id,
        type: row.type,
        status: row.status,
        clientId: row.client_id,
        issuer: row.issuer,
        hasClientSecret: row.client_secret_ciphertext !== null,
        allowedDomains: row.allowed_domains,
        lastTestError: row.last_test_error,
        testedAt: row.tested_at,
        activatedAt: row.activated_at,
      })),
    });
  });

  router.put('/v1/accounts/:accountId/sso/google', ...administered, async (request, response) => {
    const body = parseOrThrow(googleSchema, request.body, 'body');
    const { accountId } = request.params as { accountId: string };
    const allowedDomains = [...new Set(body.allowedDomains)].sort();
    const actor = ssoActor(response);
    const connection = await db.transaction(async (trx) => {
      const [row] = await trx('sso_connections')
        .insert({ account_id: accountId, type: 'google', status: 'active', allowed_domains: allowedDomains, activated_at: trx.fn.now() })
        .onConflict(trx.raw("(account_id) WHERE type = 'google'"))
        .merge({ allowed_domains: allowedDomains, status: 'active', updated_at: trx.fn.now() })
        .returning('*');
      await recordAuditEvent(trx, {
        actorType: actor.type,
        actorUserId: actor.userId,
        action: 'sso.google.configured',
        targetUserId: null,
        accountId,
        environmentId: null,
        workflowId: null,
        details: { connectionId: row.id, allowedDomains, ...(actor.operatorKeyId ? { operatorKeyId: actor.operatorKeyId } : {}) },
        eventKey: `sso.google.configured:${row.id}:${Date.now()}:${hashToken(allowedDomains.join(',')).slice(0, 12)}`,
      });
      return row;
    });
    response.json({ id: connection.id, type: 'google', status: connection.status, allowedDomains: connection.allowed_domains });
  });

  router.put('/v1/accounts/:accountId/settings', ...administered, async (request, response) => {
    const body = parseOrThrow(settingsSchema, request.body, 'body');
    const { accountId } = request.params as { accountId: string };
    const actor = ssoActor(response);
    await db.transaction(async (trx) => {
      // Locks the account so a connection cannot be disabled between this check and the write.
      await trx('accounts').where({ id: accountId }).forUpdate().first('id');
      if (!body.passwordLoginEnabled && !(await trx('sso_connections').where({ account_id: accountId, status: 'active' }).first('id'))) {
        throw conflict('sso_connection_required', 'Password login can be turned off only while the account has an active SSO connection.');
      }
      const [before] = await trx('account_sso_settings').where({ account_id: accountId }).select('password_login_enabled');
      await trx('account_sso_settings')
        .insert({ account_id: accountId, password_login_enabled: body.passwordLoginEnabled })
        .onConflict('account_id')
        .merge({ password_login_enabled: body.passwordLoginEnabled, updated_at: trx.fn.now() });
      if ((before?.password_login_enabled ?? true) !== body.passwordLoginEnabled) {
        await recordAuditEvent(trx, {
          actorType: actor.type,
          actorUserId: actor.userId,
          action: body.passwordLoginEnabled ? 'account.password_login_enabled' : 'account.password_login_disabled',
          targetUserId: null,
          accountId,
          environmentId: null,
          workflowId: null,
          details: actor.operatorKeyId ? { operatorKeyId: actor.operatorKeyId } : {},
          eventKey: `account.password_login:${accountId}:${Date.now()}:${body.passwordLoginEnabled}`,
        });
      }
    });
    response.json({ accountId, passwordLoginEnabled: body.passwordLoginEnabled });
  });

  router.post('/v1/operator/sso/onboardings/:accountId/approve', authenticate(db, config), requireOperator, async (request, response) => {
    const caller = request.caller as { kind: 'operator'; operatorKeyId: string };
    const state = await workflows.approve((request.params as { accountId: string }).accountId, {
      type: 'operator',
      userId: null,
      operatorKeyId: caller.operatorKeyId,
    });
    response.json({ state });
  });

  router.post('/v1/operator/sso/onboardings/:accountId/cancel', authenticate(db, config), requireOperator, async (request, response) => {
    const caller = request.caller as { kind: 'operator'; operatorKeyId: string };
    const state = await workflows.cancel((request.params as { accountId: string }).accountId, {
      type: 'operator',
      userId: null,
      operatorKeyId: caller.operatorKeyId,
    });
    response.json({ state });
  });

  // --- The customer contact's self-service page ---------------------------------------------------

  router.get('/sso/onboarding', async (request, response) => {
    noStore(response);
    const token = typeof request.query.token === 'string' && request.query.token.length <= 200 ? request.query.token : undefined;
    const onboarding = token ? await findOnboardingByToken(db, token) : undefined;
    if (!token || !onboarding) {
      response.status(410).type('html').send(messagePage('This link no longer works', LINK_NOT_VALID));
      return;
    }
    renderOnboarding(response, token, onboarding);
  });

  /** Runs a self-service action; the form gets the page back with the problem, JSON callers the error. */
  async function selfService(request: Request, response: Response, action: () => Promise<void>) {
    noStore(response);
    try {
      await action();
    } catch (error) {
      if (!isFormPost(request) || !(error instanceof HttpError)) {
        throw error;
      }
      const token = typeof request.body?.token === 'string' ? request.body.token : '';
      const onboarding = error.status === 410 || !token ? undefined : await findOnboardingByToken(db, token);
      if (!onboarding) {
        response.status(error.status).type('html').send(messagePage('This link no longer works', LINK_NOT_VALID));
        return;
      }
      renderOnboarding(response, token, onboarding, { kind: 'error', text: error.message }, error.status);
    }
  }

  router.post('/v1/sso/onboarding/credentials', (request, response) =>
    selfService(request, response, async () => {
      const body = parseSelfServiceForm(request, credentialsSchema, 'credentials');
      if (ssoConfig.encryptionKeys.length === 0) {
        throw new HttpError(503, 'sso_not_configured', 'Single sign-on is not configured on this server: set SSO_ENCRYPTION_KEYS.');
      }
      const onboarding = await submitCredentials(db, ssoConfig, body.token, {
        clientId: body.clientId,
        clientSecret: body.clientSecret === '' ? undefined : body.clientSecret,
        issuer: body.issuer,
      });
      notifyWorkflow(request, onboarding, { kind: 'credentials' });
      if (isFormPost(request)) {
        renderOnboarding(response, body.token, onboarding, { kind: 'ok', text: 'Credentials saved. Now test the connection.' });
        return;
      }
      response.json(onboardingJson(onboarding));
    }),
  );

  router.post('/v1/sso/onboarding/test', (request, response) =>
    selfService(request, response, async () => {
      const body = parseSelfServiceForm(request, tokenFormSchema, 'test');
      const onboarding = await findOnboardingByToken(db, body.token);
      if (!onboarding) {
        throw new HttpError(410, 'link_not_valid', LINK_NOT_VALID);
      }
      if (onboarding.status !== 'pending') {
        throw conflict('sso_onboarding_confirmed', 'The setup is already confirmed and waits for approval.');
      }
      const connection = (await findConnection(db, onboarding.connection.id))!;
      let started;
      try {
        started = await beginAuthorization(db, ssoConfig, redirectUri, { connection, purpose: 'connection_test', onboardingId: onboarding.id, email: null });
      } catch (error) {
        if (!(error instanceof SsoFailure)) {
          throw error;
        }
        await recordTestOutcome(db, {
          connectionId: connection.id,
          credentialsVersion: connection.credentials_version,
          accountId: onboarding.accountId,
          workflowId: onboarding.workflowId,
          passed: false,
          failure: error.message,
        });
        notifyWorkflow(request, onboarding, { kind: 'tested', passed: false, failure: error.message });
        throw new HttpError(422, error.code, error.message);
      }
      response.cookie(STATE_COOKIE, started.state, cookieOptions(config, STATE_COOKIE_PATH, ssoConfig.loginStateTtlMs));
      if (isFormPost(request)) {
        response.type('html').send(continueToProviderPage(started.url.href));
        return;
      }
      response.json({ authorizationUrl: started.url.href });
    }),
  );

  router.post('/v1/sso/onboarding/confirm', (request, response) =>
    selfService(request, response, async () => {
      const body = parseSelfServiceForm(request, tokenFormSchema, 'confirm');
      const before = await findOnboardingByToken(db, body.token);
      const onboarding = await confirmOnboarding(db, body.token);
      if (before?.status === 'pending') {
        notifyWorkflow(request, onboarding, { kind: 'confirmed' });
      }
      if (isFormPost(request)) {
        renderOnboarding(response, body.token, onboarding, { kind: 'ok', text: 'Thank you. The setup is confirmed.' });
        return;
      }
      response.json(onboardingJson(onboarding));
    }),
  );

  // --- Sign-in --------------------------------------------------------------------------------------

  router.get('/login', async (request, response) => {
    noStore(response);
    const parsed = loginQuerySchema.safeParse(request.query);
    const typed = parsed.success ? parsed.data.email?.trim() : undefined;
    if (!typed) {
      response.type('html').send(loginPage({}));
      return;
    }
    if (!emailSchema.safeParse(typed).success) {
      response.status(400).type('html').send(loginPage({ problem: 'Enter a valid email address.' }));
      return;
    }

    // NOTE: like most home-realm discovery pages, this shows whether an address belongs to an account with SSO.
    const user = await db('users').where({ email_normalized: normalizeEmail(typed) }).first('id');
    const connections = user
      ? await db('sso_connections')
          .join('accounts', 'accounts.id', 'sso_connections.account_id')
          .whereIn('sso_connections.account_id', db('memberships').where({ user_id: user.id, status: 'active' }).select('account_id'))
          .where('sso_connections.status', 'active')
          .orderBy(['accounts.name', 'sso_connections.type'])
          .select('sso_connections.id', 'sso_connections.type', 'accounts.name as account_name')
      : [];
    const options: LoginOption[] = connections.map((connection) => ({
      connectionId: connection.id,
      label: `Sign in to ${connection.account_name} with ${connection.type === 'google' ? 'Google' : 'Okta'}`,
    }));
    const passwordAllowed = user ? await passwordLoginAllowed(db, user.id) : true;
    response.type('html').send(loginPage({ email: typed, options, passwordAllowed: passwordAllowed || options.length === 0 }));
  });

  router.get('/v1/auth/sso/start', async (request, response) => {
    noStore(response);
    const parsed = startQuerySchema.safeParse(request.query);
    if (!parsed.success) {
      response.status(400).type('html').send(messagePage('Sign-in failed', 'The sign-in link is incomplete. Start again from the sign-in page.', { href: '/login', label: 'Sign in' }));
      return;
    }
    const connection = await findConnection(db, parsed.data.connection);
    if (!connection || connection.status !== 'active') {
      response.status(404).type('html').send(messagePage('Sign-in failed', 'This single sign-on connection is not active.', { href: '/login', label: 'Sign in' }));
      return;
    }
    try {
      const started = await beginAuthorization(db, ssoConfig, redirectUri, { connection, purpose: 'sign_in', onboardingId: null, email: parsed.data.email });
      response.cookie(STATE_COOKIE, started.state, cookieOptions(config, STATE_COOKIE_PATH, ssoConfig.loginStateTtlMs));
      response.redirect(303, started.url.href);
    } catch (error) {
      if (!(error instanceof SsoFailure || error instanceof HttpError || error instanceof SecretBoxError)) {
        throw error;
      }
      request.log.warn({ connectionId: connection.id, err: error }, 'SSO sign-in could not start');
      response.status(502).type('html').send(messagePage('Sign-in failed', `Single sign-on could not start: ${error.message}`, { href: '/login', label: 'Sign in' }));
    }
  });

  router.get('/v1/auth/sso/callback', async (request, response) => {
    noStore(response);
    const state = typeof request.query.state === 'string' ? request.query.state : '';
    const cookieState = readCookie(request, STATE_COOKIE);
    clearCookie(response, config, STATE_COOKIE, STATE_COOKIE_PATH);
    const signInLink = { href: '/login', label: 'Back to sign-in' };

    // The state cookie ties the response to the browser that started the sign-in (login CSRF).
    if (!state || cookieState !== state) {
      response
        .status(400)
        .type('html')
        .send(messagePage('Sign-in failed', 'This sign-in response does not belong to a sign-in started in this browser. Start the sign-in again.', signInLink));
      return;
    }

    const callbackUrl = new URL(redirectUri);
    callbackUrl.search = new URL(request.originalUrl, 'http://callback.invalid').search;
    let outcome;
    try {
      outcome = await completeCallback(db, ssoConfig, callbackUrl);
    } catch (error) {
      if (!(error instanceof SsoFailure || error instanceof HttpError || error instanceof SecretBoxError)) {
        throw error;
      }
      request.log.info({ reason: error instanceof SsoFailure ? error.code : error.name }, 'SSO sign-in rejected');
      response.status(error instanceof SsoFailure ? 401 : 502).type('html').send(messagePage('Sign-in failed', error.message, signInLink));
      return;
    }

    if (outcome.purpose === 'connection_test') {
      const onboarding = await db('sso_onboardings').where({ id: outcome.onboardingId }).first();
      const recorded = await recordTestOutcome(db, {
        connectionId: outcome.connection.id,
        credentialsVersion: outcome.credentialsVersion,
        accountId: outcome.connection.account_id,
        workflowId: onboarding.workflow_id,
        passed: outcome.passed,
        ...(outcome.failure ? { failure: outcome.failure } : {}),
      });
      if (recorded) {
        notifyWorkflow(request, { workflowId: onboarding.workflow_id, workflowRunId: onboarding.workflow_run_id }, {
          kind: 'tested',
          passed: outcome.passed,
          ...(outcome.failure ? { failure: outcome.failure } : {}),
        });
      }
      const back = onboarding.token_hash
        ? { href: ssoOnboardingLink(config.appBaseUrl, linkKey, onboarding.id, onboarding.token_salt), label: 'Back to the setup page' }
        : undefined;
      const title = outcome.passed ? 'Connection test passed' : 'Connection test failed';
      const message = outcome.passed
        ? `You signed in as ${outcome.email}. The connection works; go back to the setup page to confirm.`
        : outcome.failure!;
      response.status(outcome.passed ? 200 : 422).type('html').send(messagePage(title, message, back));
      return;
    }

    const session = await createSession(db, config, outcome.userId, { ip: request.ip, userAgent: request.get('user-agent') });
    await recordSignIn(db, outcome, session.id);
    request.log.info({ userId: outcome.userId, sessionId: session.id, connectionId: outcome.connectionId }, 'signed in with SSO');
    response.cookie(SESSION_COOKIE, session.token, cookieOptions(config, '/', config.session.absoluteTimeoutMs));
    response.type('html').send(messagePage('Signed in', `You are signed in as ${outcome.email}.`));
  });

  return router;
}
