import type { Request, RequestHandler } from 'express';
import type { Knex } from 'knex';

import { USER_MANAGER_ROLES } from '../db/roles.js';
import type { Config } from '../lib/config.js';
import { hashToken, isOperatorKey, isSessionToken, parseApiKey } from '../lib/secrets.js';
import { applyCallerRateLimit } from './caller-rate-limit.js';
import type { Caller, Principal } from './context.js';
import { HttpError } from './errors.js';
import { rolesOf } from './members.js';
import { readCookie, SESSION_COOKIE } from './sso/cookies.js';

const BEARER = /^Bearer\s+(\S+)$/i;

/** A session's or API key's last-used time is written at most this often, to spare the database a write per request. */
const LAST_USED_RESOLUTION_MS = 60_000;

function unauthorized(message: string): HttpError {
  return new HttpError(401, 'unauthorized', message, undefined, { 'WWW-Authenticate': 'Bearer realm="lifecycle"' });
}

/** Records a use without delaying the request; a lost update of a last-used time is harmless. */
function touch(request: Request, query: Promise<unknown>): void {
  query.catch((error: unknown) => request.log?.warn({ err: error }, 'could not record the credential use'));
}

/**
 * Resolves an API key together with its owner's membership in the key's environment, so that
 * requireEnvironmentMember needs no query of its own for API keys.
 */
async function resolveApiKey(db: Knex, request: Request, key: string): Promise<Caller> {
  const row = await db('api_keys')
    .join('memberships', function joinMembership() {
      this.on('memberships.user_id', '=', 'api_keys.user_id').andOn('memberships.environment_id', '=', 'api_keys.environment_id');
    })
    .join('environments', 'environments.id', 'api_keys.environment_id')
    .where('api_keys.secret_hash', hashToken(key))
    .whereNull('api_keys.revoked_at')
    .where('memberships.status', 'active')
    .first(
      'api_keys.id',
      'api_keys.user_id',
      'api_keys.account_id',
      'api_keys.environment_id',
      'api_keys.last_used_at',
      'environments.name as environment',
      'memberships.id as membership_id',
      rolesOf(db, 'memberships.id'),
    );
  if (!row) {
    throw unauthorized('The API key is unknown, revoked, or its owner is no longer an active member.');
  }
  if (row.last_used_at === null || Date.now() - new Date(row.last_used_at).getTime() > LAST_USED_RESOLUTION_MS) {
    touch(request, db('api_keys').where({ id: row.id }).update({ last_used_at: db.fn.now() }));
  }
  return {
    kind: 'apiKey',
    apiKeyId: row.id,
    userId: row.user_id,
    accountId: row.account_id,
    environmentId: row.environment_id,
    membership: { environment: row.environment, membershipId: row.membership_id, roles: row.roles },
  };
}

async function resolveSession(db: Knex, config: Config, request: Request, token: string): Promise<Caller> {
  const idleSeconds = Math.floor(config.session.idleTimeoutMs / 1000);
  const row = await db('sessions')
    .where({ token_hash: hashToken(token) })
    .whereNull('revoked_at')
    .where('expires_at', '>', db.fn.now())
    .whereRaw(`last_used_at > now() - make_interval(secs => ?)`, [idleSeconds])
    .first('id', 'user_id', 'last_used_at');
  if (!row) {
    throw unauthorized('The session has ended. Sign in again with POST /v1/auth/login.');
  }
  if (Date.now() - new Date(row.last_used_at).getTime() > LAST_USED_RESOLUTION_MS) {
    touch(request, db('sessions').where({ id: row.id }).update({ last_used_at: db.fn.now() }));
  }
  return { kind: 'session', sessionId: row.id, userId: row.user_id };
}

async function resolveOperatorKey(db: Knex, request: Request, key: string): Promise<Caller> {
  const row = await db('operator_api_keys').where({ secret_hash: hashToken(key) }).whereNull('revoked_at').first('id', 'name');
  if (!row) {
    throw unauthorized('The operator key is unknown or revoked.');
  }
  touch(request, db('operator_api_keys').where({ id: row.id }).update({ last_used_at: db.fn.now() }));
  return { kind: 'operator', operatorKeyId: row.id, name: row.name };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Returns the session token from the cookie that SSO sign-in sets, or undefined. A browser sends
 * cookies with requests that other sites start, so a state-changing request must also come from the
 * app's own origin: a simple, standard defence against cross-site request forgery.
 */
function sessionFromCookie(request: Request, config: Config): string | undefined {
  const token = readCookie(request, SESSION_COOKIE);
  if (token === undefined) {
    return undefined;
  }
  if (!SAFE_METHODS.has(request.method) && request.get('origin') !== new URL(config.appBaseUrl).origin) {
    throw new HttpError(403, 'csrf_failed', 'A request authenticated by the session cookie must come from the application\'s own pages.');
  }
  return token;
}

/**
 * Resolves the caller from `Authorization: Bearer <credential>`, or from the session cookie that SSO
 * sign-in sets. Three kinds of credential are accepted, distinguished by their prefix: API keys (`lc_`),
 * session tokens (`ls_`) and operator keys (`lo_`). The caller's request then counts against its
 * per-credential rate limit (see installCallerRateLimit).
 */
export function authenticate(db: Knex, config: Config): RequestHandler {
  return async (request, response, next) => {
    const match = BEARER.exec(request.get('authorization') ?? '');
    const credential = match?.[1] ?? sessionFromCookie(request, config);
    if (credential === undefined) {
      throw unauthorized('Send an API key or a session token as "Authorization: Bearer <credential>".');
    }

    let caller: Caller;
    if (parseApiKey(credential)) {
      caller = await resolveApiKey(db, request, credential);
    } else if (isSessionToken(credential)) {
      caller = await resolveSession(db, config, request, credential);
    } else if (isOperatorKey(credential)) {
      caller = await resolveOperatorKey(db, request, credential);
    } else {
      throw unauthorized('The credential is malformed: expected an API key (lc_…), a session token (ls_…) or an operator key (lo_…).');
    }

    request.caller = caller;
    request.log?.setBindings({
      callerKind: caller.kind,
      ...(caller.kind === 'operator' ? { operatorKeyId: caller.operatorKeyId } : { actorUserId: caller.userId }),
    });
    applyCallerRateLimit(request, response, next);
  };
}

/** Allows only signed-in people: sessions, not API keys or operator keys. */
export const requireSession: RequestHandler = (request, _response, next) => {
  if (request.caller?.kind !== 'session') {
    throw new HttpError(403, 'forbidden', 'This route needs a session token from POST /v1/auth/login.');
  }
  next();
};

/** Allows only platform operators. */
export const requireOperator: RequestHandler = (request, _response, next) => {
  if (request.caller?.kind !== 'operator') {
    throw new HttpError(403, 'forbidden', 'This route needs an operator key.');
  }
  next();
};

/**
 * Resolves the caller's membership in the account environment of the path into `request.principal`.
 * An API key works only in its own environment. A session works wherever its person is an active
 * member; where that membership was deactivated it gets 401, because deactivation ends every session
 * there at once. Callers with no access get 403 whether or not the account exists, so that nobody can
 * probe for other tenants.
 */
export function requireEnvironmentMember(db: Knex): RequestHandler {
  return async (request, _response, next) => {
    const caller = request.caller!;
    const { accountId, environment } = request.params as { accountId: string; environment: string };
    const forbidden = new HttpError(403, 'forbidden', `You have no access to account "${accountId}" environment "${environment}".`);
    if (caller.kind === 'operator') {
      throw new HttpError(403, 'forbidden', 'Operator keys work only on /v1/operator routes.');
    }

    if (caller.kind === 'apiKey') {
      // resolveApiKey has already loaded the key owner's active membership in the key's environment.
      if (caller.accountId !== accountId || caller.membership.environment !== environment) {
        throw new HttpError(403, 'forbidden', `This API key is not valid for account "${accountId}" environment "${environment}".`);
      }
      request.principal = {
        caller,
        userId: caller.userId,
        accountId,
        environmentId: caller.environmentId,
        environment,
        membershipId: caller.membership.membershipId,
        roles: caller.membership.roles,
      };
      next();
      return;
    }

    const membership = await db('memberships')
      .join('environments', 'environments.id', 'memberships.environment_id')
      .where({ 'environments.account_id': accountId, 'environments.name': environment, 'memberships.user_id': caller.userId })
      .first('memberships.id', 'memberships.status', 'memberships.environment_id', rolesOf(db, 'memberships.id'));
    if (!membership) {
      throw forbidden;
    }
    if (membership.status === 'deactivated') {
      throw unauthorized('Your membership in this environment was deactivated; this credential no longer works here.');
    }
    if (membership.status !== 'active') {
      throw forbidden;
    }

    const principal: Principal = {
      caller,
      userId: caller.userId,
      accountId,
      environmentId: membership.environment_id,
      environment,
      membershipId: membership.id,
      roles: membership.roles,
    };
    request.principal = principal;
    next();
  };
}

export function isAdministrator(principal: Principal): boolean {
  return principal.roles.includes('administrator');
}

/** Allows the request only when the caller is an administrator or user administrator of the environment. */
export const requireUserManager: RequestHandler = (request, _response, next) => {
  const principal = request.principal!;
  if (!principal.roles.some((role) => (USER_MANAGER_ROLES as readonly string[]).includes(role))) {
    throw new HttpError(403, 'forbidden', 'Managing users requires the administrator or user_administrator role.');
  }
  next();
};
