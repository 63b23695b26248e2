import type { RequestHandler, Response } from 'express';
import type { Knex } from 'knex';

import type { SsoActor } from '../../activities/sso.js';
import { HttpError, notFound } from '../errors.js';

/** Returns the actor that `requireAccountAdministratorOrOperator` resolved, for audit events and workflows. */
export function ssoActor(response: Response): SsoActor {
  return response.locals.ssoActor as SsoActor;
}

/**
 * Allows operators (operator keys) and active administrators of the account in the path, in any of its
 * environments. An API key works only for its own account. Non-operators get 403 whether or not the
 * account exists, so that callers cannot probe for other tenants; operators get 404 for an unknown account.
 */
export function requireAccountAdministratorOrOperator(db: Knex): RequestHandler {
  return async (request, response, next) => {
    const caller = request.caller!;
    const { accountId } = request.params as { accountId: string };

    if (caller.kind === 'operator') {
      if (!(await db('accounts').where({ id: accountId }).first('id'))) {
        throw notFound(`Account "${accountId}"`);
      }
      response.locals.ssoActor = { type: 'operator', userId: null, operatorKeyId: caller.operatorKeyId } satisfies SsoActor;
      next();
      return;
    }

    const forbidden = new HttpError(403, 'forbidden', `Managing single sign-on of account "${accountId}" requires the administrator role there.`);
    if (caller.kind === 'apiKey' && caller.accountId !== accountId) {
      throw forbidden;
    }
    const administrator = await db('memberships')
      .join('membership_roles', 'membership_roles.membership_id', 'memberships.id')
      .where({ 'memberships.account_id': accountId, 'memberships.user_id': caller.userId, 'memberships.status': 'active' })
      .where('membership_roles.role_key', 'administrator')
      .modify((query) => {
        if (caller.kind === 'apiKey') {
          query.where('memberships.environment_id', caller.environmentId);
        }
      })
      .first('memberships.id');
    if (!administrator) {
      throw forbidden;
    }
    response.locals.ssoActor = { type: 'user', userId: caller.userId } satisfies SsoActor;
    next();
  };
}
