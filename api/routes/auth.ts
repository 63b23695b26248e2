import { Router, type Request } from 'express';
import { rateLimit, type RateLimitRequestHandler } from 'express-rate-limit';
import type { Knex } from 'knex';
import { z } from 'zod';

import type { Config } from '../../lib/config.js';
import { normalizeEmail } from '../../lib/email-address.js';
import { hashPassword, verifyPassword } from '../../lib/passwords.js';
import { randomToken } from '../../lib/secrets.js';
import { authenticate, requireSession } from '../auth.js';
import { HttpError, parseOrThrow } from '../errors.js';
import { createSession } from '../sessions.js';
import { cookieOptions, SESSION_COOKIE } from '../sso/cookies.js';
import { loginPage, messagePage } from '../sso/pages.js';
import { passwordLoginAllowed } from '../sso/store.js';

const loginSchema = z.strictObject({
  email: z.string().max(254, 'must be at most 254 characters'),
  password: z.string().max(1000, 'must be at most 1000 characters'),
});

const INVALID_CREDENTIALS = 'The email address or password is incorrect.';

function tooManyAttempts(request: Request, windowMs: number): HttpError {
  const resetTime = (request as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
  const retryAfter = Math.max(1, Math.ceil(((resetTime?.getTime() ?? Date.now() + windowMs) - Date.now()) / 1000));
  return new HttpError(429, 'rate_limited', `Too many sign-in attempts; try again in ${retryAfter} s.`, { retryAfterSeconds: retryAfter }, {
    'Retry-After': String(retryAfter),
  });
}

/** Sign-in limits per client address and per email address (express-rate-limit, memory store). */
function loginLimiters(config: Config): RateLimitRequestHandler[] {
  const { perEmail, perIp, windowMs } = config.loginRateLimit;
  const common = {
    windowMs,
    standardHeaders: 'draft-8' as const,
    legacyHeaders: false,
    handler: (request: Request, _response: unknown, next: (error: unknown) => void) => next(tooManyAttempts(request, windowMs)),
  };
  // NOTE: the memory store counts per API process; several API replicas need a shared store.
  const byIp = rateLimit({ ...common, limit: perIp, identifier: 'login-ip' });
  const byEmail = rateLimit({
    ...common,
    limit: perEmail,
    identifier: 'login-email',
    keyGenerator: (request) => {
      const email: unknown = request.body?.email;
      return `email:${typeof email === 'string' ? normalizeEmail(email) : ''}`;
    },
  });
  return [byIp, byEmail];
}

/** Sign-in and sign-out. */
export function authRouter(db: Knex, config: Config): Router {
  const router = Router();
  // Verified when the email is unknown or has no password, so that such attempts take as long as a wrong password.
  const decoyHash = hashPassword(randomToken());

  router.post('/login', ...loginLimiters(config), async (request, response) => {
    // The password form of the /login page posts here; it gets the session as a cookie and a page back.
    const fromForm = request.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded';
    try {
      if (fromForm && request.get('origin') !== new URL(config.appBaseUrl).origin) {
        throw new HttpError(403, 'csrf_failed', 'Sign in from the sign-in page of this application.');
      }
      const { user, session, memberships } = await signIn(request);
      if (fromForm) {
        response.cookie(SESSION_COOKIE, session.token, cookieOptions(config, '/', config.session.absoluteTimeoutMs));
        response.type('html').send(messagePage('Signed in', `You are signed in as ${user.email}.`));
        return;
      }
      response.json({
        token: session.token,
        expiresAt: session.expiresAt.toISOString(),
        idleTimeoutSeconds: Math.floor(config.session.idleTimeoutMs / 1000),
        user: { id: user.id, email: user.email },
        memberships,
      });
    } catch (error) {
      if (!fromForm || !(error instanceof HttpError)) {
        throw error;
      }
      const email = typeof request.body?.email === 'string' ? request.body.email : undefined;
      response.status(error.status).type('html').send(loginPage({ ...(email ? { email } : {}), passwordAllowed: true, problem: error.message }));
    }
  });

  /** Checks the email and password and starts a session, or throws the HTTP error to respond with. */
  async function signIn(request: Request) {
    const body = parseOrThrow(loginSchema, request.body, 'body');
    const user = await db('users').where({ email_normalized: normalizeEmail(body.email) }).first('id', 'email', 'password_hash');

    const passwordHash: string = user?.password_hash ?? (await decoyHash);
    const matches = await verifyPassword(passwordHash, body.password);
    if (!user?.password_hash || !matches) {
      throw new HttpError(401, 'invalid_credentials', INVALID_CREDENTIALS);
    }

    const memberships = await activeMemberships(db, user.id);
    if (memberships.length === 0) {
      throw new HttpError(403, 'no_active_membership', 'This person has no active membership in any account environment.');
    }

    if (!(await passwordLoginAllowed(db, user.id))) {
      throw new HttpError(403, 'password_login_disabled', 'Password sign-in is turned off for your account; sign in with single sign-on at /login.');
    }

    const session = await createSession(db, config, user.id, { ip: request.ip, userAgent: request.get('user-agent') });
    request.log.info({ userId: user.id, sessionId: session.id }, 'signed in');
    return { user: { id: user.id as string, email: user.email as string }, session, memberships };
  }

  router.post('/logout', authenticate(db, config), requireSession, async (request, response) => {
    const caller = request.caller!;
    if (caller.kind === 'session') {
      await db('sessions').where({ id: caller.sessionId }).whereNull('revoked_at').update({ revoked_at: db.fn.now(), revoked_reason: 'logout' });
    }
    response.status(204).end();
  });

  return router;
}

export interface MembershipSummary {
  accountId: string;
  accountName: string;
  environment: string;
  status: string;
  roles: string[];
}

async function membershipsOf(db: Knex, userId: string, statuses?: string[]): Promise<MembershipSummary[]> {
  const query = db('memberships')
    .join('environments', 'environments.id', 'memberships.environment_id')
    .join('accounts', 'accounts.id', 'memberships.account_id')
    .where('memberships.user_id', userId)
    .orderBy([{ column: 'accounts.id' }, { column: 'environments.name' }])
    .select(
      'accounts.id as accountId',
      'accounts.name as accountName',
      'environments.name as environment',
      'memberships.status as status',
      db.raw(
        `(SELECT coalesce(array_agg(role_key ORDER BY role_key), '{}') FROM membership_roles
          WHERE membership_roles.membership_id = memberships.id) AS roles`,
      ),
    );
  if (statuses) {
    query.whereIn('memberships.status', statuses);
  }
  return query;
}

export function activeMemberships(db: Knex, userId: string): Promise<MembershipSummary[]> {
  return membershipsOf(db, userId, ['active']);
}

/** `GET /v1/me`: the caller and their memberships in every account and environment. */
export function meRouter(db: Knex, config: Config): Router {
  const router = Router();
  router.use(authenticate(db, config));

  router.get('/', async (request, response) => {
    const caller = request.caller!;
    if (caller.kind === 'operator') {
      throw new HttpError(403, 'forbidden', 'Operator keys belong to no person; /v1/me needs a session token or an API key.');
    }
    const user = await db('users').where({ id: caller.userId }).first('id', 'email');
    response.json({ user: { id: user.id, email: user.email }, memberships: await membershipsOf(db, caller.userId) });
  });

  return router;
}

