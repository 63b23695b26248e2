import type { Knex } from 'knex';

import { recordAuditEvent } from './audit.js';
import { normalizeEmail } from '../lib/email-address.js';
import { generateApiKey, hashToken, parseApiKey } from '../lib/secrets.js';

/**
 * Operator tasks that have no HTTP endpoint: creating accounts and first administrators, and issuing
 * API keys. The dev seed and the admin command line both use them.
 */

export async function createAccount(db: Knex, input: { id: string; name: string; environments: string[] }): Promise<void> {
  await db.transaction(async (trx) => {
    await trx('accounts').insert({ id: input.id, name: input.name }).onConflict('id').ignore();
    for (const name of input.environments) {
      await trx('environments').insert({ account_id: input.id, name }).onConflict(['account_id', 'name']).ignore();
    }
  });
}

export async function findEnvironment(db: Knex, accountId: string, environment: string): Promise<{ id: string } | undefined> {
  return db('environments').where({ account_id: accountId, name: environment }).first('id');
}

/**
 * Makes `email` an active member with the given roles, creating the user when needed. For bootstrapping
 * the first administrator of an account, whom no one can invite; everyone else is invited.
 */
export async function ensureActiveMember(
  db: Knex,
  input: { accountId: string; environmentId: string; email: string; roles: string[] },
): Promise<{ userId: string; membershipId: string }> {
  return db.transaction(async (trx) => {
    await trx('users').insert({ email: input.email.trim() }).onConflict('email_normalized').ignore();
    const user = await trx('users').where({ email_normalized: normalizeEmail(input.email) }).first('id');
    await trx('memberships')
      .insert({ user_id: user.id, account_id: input.accountId, environment_id: input.environmentId, status: 'active', activated_at: trx.fn.now() })
      .onConflict(['user_id', 'environment_id'])
      .merge({ status: 'active', activated_at: trx.fn.now(), updated_at: trx.fn.now() });
    const membership = await trx('memberships').where({ user_id: user.id, environment_id: input.environmentId }).first('id');
    await trx('membership_roles')
      .insert(input.roles.map((role) => ({ membership_id: membership.id, role_key: role })))
      .onConflict(['membership_id', 'role_key'])
      .ignore();
    await recordAuditEvent(trx, {
      actorType: 'operator',
      actorUserId: null,
      action: 'membership.bootstrapped',
      targetUserId: user.id,
      accountId: input.accountId,
      environmentId: input.environmentId,
      workflowId: null,
      details: { roles: [...input.roles].sort() },
      eventKey: `membership.bootstrapped:${membership.id}:${[...input.roles].sort().join(',')}`,
    });
    return { userId: user.id, membershipId: membership.id };
  });
}

/**
 * Stores an API key for a member's environment and returns the key, which is shown once and kept only
 * as a hash. `presetKey` lets the dev seed reuse DEV_ADMIN_API_KEY; it must have the generated format.
 */
export async function createApiKey(
  db: Knex,
  input: { userId: string; accountId: string; environmentId: string; name: string; presetKey?: string },
): Promise<{ id: string; key: string; prefix: string }> {
  let key: string;
  let prefix: string;
  if (input.presetKey !== undefined) {
    const parsed = parseApiKey(input.presetKey);
    if (!parsed) {
      throw new Error('The preset API key must look like lc_<12 hex characters>_<43 base64url characters>.');
    }
    key = input.presetKey;
    prefix = parsed.prefix;
    const existing = await db('api_keys').where({ secret_hash: hashToken(key) }).first('id');
    if (existing) {
      return { id: existing.id, key, prefix };
    }
  } else {
    ({ key, prefix } = generateApiKey());
  }
  const [row] = await db('api_keys')
    .insert({
      user_id: input.userId,
      account_id: input.accountId,
      environment_id: input.environmentId,
      name: input.name,
      prefix,
      secret_hash: hashToken(key),
    })
    .returning('id');
  return { id: row.id, key, prefix };
}
