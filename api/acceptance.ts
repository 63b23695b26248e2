import type { Knex } from 'knex';

import { recordAuditEvent } from '../db/audit.js';
import { hashPassword, passwordProblem } from '../lib/passwords.js';
import { hashToken } from '../lib/secrets.js';
import { HttpError, validationError } from './errors.js';

/** Tokens are 32 bytes in base64url; anything else cannot match, so it needs no database look-up. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export const INVALID_LINK_MESSAGE =
  'This invitation link is not valid: it was already used, was replaced by a newer email, was revoked, or has expired. Ask an administrator to send a new invitation.';

export function invalidLink(): HttpError {
  return new HttpError(410, 'invitation_link_invalid', INVALID_LINK_MESSAGE);
}

export interface InvitationPreview {
  email: string;
  accountName: string;
  environment: string;
  expiresAt: Date;
  /** True when the person must choose a password; false when they already have one from another membership. */
  needsPassword: boolean;
}

/** Reads what an invitation link is for, changing nothing; undefined for a link that no longer works. */
export async function previewInvitation(db: Knex, token: string): Promise<InvitationPreview | undefined> {
  if (!TOKEN_PATTERN.test(token)) {
    return undefined;
  }
  const row = await db('invitations')
    .join('memberships', 'memberships.id', 'invitations.membership_id')
    .join('users', 'users.id', 'memberships.user_id')
    .join('environments', 'environments.id', 'invitations.environment_id')
    .join('accounts', 'accounts.id', 'memberships.account_id')
    .where('invitations.token_hash', hashToken(token))
    .where('invitations.status', 'pending')
    .where('invitations.expires_at', '>', db.fn.now())
    .first('users.email', 'users.password_hash', 'accounts.name as accountName', 'environments.name as environment', 'invitations.expires_at');
  if (!row) {
    return undefined;
  }
  return {
    email: row.email,
    accountName: row.accountName,
    environment: row.environment,
    expiresAt: new Date(row.expires_at),
    needsPassword: row.password_hash === null,
  };
}

export interface AcceptedInvitation {
  userId: string;
  email: string;
  accountId: string;
  environment: string;
  membershipId: string;
  workflowId: string;
  workflowRunId: string;
}

/**
 * Accepts an invitation in one transaction: the invitation ends as `accepted` and its token is cleared,
 * the membership becomes `active`, the password is set when the person has none, and an audit event is
 * written. This runs in the API rather than in the workflow so that the password never enters workflow
 * history; the caller then signals the workflow. Throws 410 for a link that no longer works.
 */
export async function acceptInvitation(db: Knex, token: string, password: string | undefined): Promise<AcceptedInvitation> {
  if (!TOKEN_PATTERN.test(token)) {
    throw invalidLink();
  }

  return db.transaction(async (trx) => {
    const invitation = await trx('invitations')
      .where({ token_hash: hashToken(token), status: 'pending' })
      .where('expires_at', '>', trx.fn.now())
      .forUpdate()
      .first();
    if (!invitation) {
      throw invalidLink();
    }

    const membership = await trx('memberships').where({ id: invitation.membership_id }).forUpdate().first();
    const user = await trx('users').where({ id: membership.user_id }).forUpdate().first();
    const environment = await trx('environments').where({ id: invitation.environment_id }).first('name');

    let passwordHash: string | undefined;
    if (user.password_hash === null) {
      if (password === undefined || password === '') {
        throw validationError([{ field: 'body.password', rule: 'is required because this person has no password yet' }]);
      }
      const problem = passwordProblem(password, user.email);
      if (problem) {
        throw validationError([{ field: 'body.password', rule: problem }]);
      }
      passwordHash = await hashPassword(password);
    } else if (password !== undefined && password !== '') {
      throw validationError([
        { field: 'body.password', rule: 'must be omitted because this person already has a password; sign in with it after accepting' },
      ]);
    }

    if (passwordHash) {
      await trx('users').where({ id: user.id }).update({ password_hash: passwordHash, updated_at: trx.fn.now() });
    }
    await trx('invitations')
      .where({ id: invitation.id })
      .update({ status: 'accepted', token_hash: null, ended_at: trx.fn.now() });
    await trx('memberships')
      .where({ id: membership.id })
      .update({ status: 'active', activated_at: trx.fn.now(), updated_at: trx.fn.now() });
    await recordAuditEvent(trx, {
      actorType: 'invitee',
      actorUserId: user.id,
      action: 'invitation.accepted',
      targetUserId: user.id,
      accountId: membership.account_id,
      environmentId: invitation.environment_id,
      workflowId: invitation.workflow_id,
      details: { invitationId: invitation.id, passwordSet: passwordHash !== undefined },
      eventKey: `invitation.accepted:${invitation.id}`,
    });

    return {
      userId: user.id,
      email: user.email,
      accountId: membership.account_id,
      environment: environment.name,
      membershipId: membership.id,
      workflowId: invitation.workflow_id,
      workflowRunId: invitation.workflow_run_id,
    };
  });
}
