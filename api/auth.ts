import type { RequestHandler } from 'express';
import type { Knex } from 'knex';

import { USER_MANAGER_ROLES } from '../db/roles.js';
import { hashToken, parseApiKey } from '../lib/secrets.js';
import type { Principal } from './context.js';
import { HttpError } from './errors.js';

const BEARER = /^Bearer\s+(\S+)$/i;

function unauthorized(message: string): HttpError {
  return new HttpError(401, 'unauthorized', message, undefined, { 'WWW-Authenticate': 'Bearer realm="lifecycle"' });
}

/**
 * Resolves `Authorization: Bearer <api key>` to a principal. A key works only while it is not revoked
 * and its owner's membership in the key's environment is active.
 */
export function authenticate(db: Knex): RequestHandler {
  return async (request, _response, next) => {
    const match = BEARER.exec(request.get('authorization') ?? '');
    if (!match) {
      throw unauthorized('Send an API key as "Authorization: Bearer <key>".');
    }
    const key = match[1]!;
    if (!parseApiKey(key)) {
      throw unauthorized('The API key is malformed.');
    }

    const row = await db('api_keys')
      .join('environments', 'environments.id', 'api_keys.environment_id')
      .join('memberships', function joinMembership() {
        this.on('memberships.user_id', '=', 'api_keys.user_id').andOn('memberships.environment_id', '=', 'api_keys.environment_id');
      })
      .where('api_keys.secret_hash', hashToken(key))
      .whereNull('api_keys.revoked_at')
      .where('memberships.status', 'active')
      .first(
        'api_keys.id as apiKeyId',
        'api_keys.user_id as userId',
        'api_keys.account_id as accountId',
        'api_keys.environment_id as environmentId',
        'environments.name as environment',
        'memberships.id as membershipId',
      );
    if (!row) {
      throw unauthorized('The API key is unknown, revoked, or its owner is no longer an active member.');
    }

    const roles = await db('membership_roles').where({ membership_id: row.membershipId }).pluck('role_key');
    const principal: Principal = {
      apiKeyId: row.apiKeyId,
      userId: row.userId,
      accountId: row.accountId,
      environmentId: row.environmentId,
      environment: row.environment,
      roles,
    };
    request.principal = principal;
    request.log?.setBindings({ apiKeyId: principal.apiKeyId, actorUserId: principal.userId });

    // Not awaited on the request path: a lost update of the last-used time is harmless.
    db('api_keys')
      .where({ id: principal.apiKeyId })
      .update({ last_used_at: db.fn.now() })
      .catch((error: unknown) => request.log?.warn({ err: error }, 'could not record API key use'));
    next();
  };
}

export function isAdministrator(principal: Principal): boolean {
  return principal.roles.includes('administrator');
}

/**
 * Allows the request only when the key belongs to the account environment in the path and its owner
 * is an administrator or user administrator there. A key of another environment gets 403 whether or
 * not the path's account exists, so keys cannot probe for other tenants.
 */
export const requireUserManager: RequestHandler = (request, _response, next) => {
  const principal = request.principal!;
  const { accountId, environment } = request.params as { accountId?: string; environment?: string };
  if (principal.accountId !== accountId || principal.environment !== environment) {
    throw new HttpError(403, 'forbidden', `This API key is not valid for account "${accountId}" environment "${environment}".`);
  }
  if (!principal.roles.some((role) => (USER_MANAGER_ROLES as readonly string[]).includes(role))) {
    throw new HttpError(403, 'forbidden', 'Managing users requires the administrator or user_administrator role.');
  }
  next();
};
