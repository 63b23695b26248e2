import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import type { Knex } from 'knex';
import type { Logger } from 'pino';

import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { normalizeEmail } from '../lib/email-address.js';
import { hashPassword, passwordProblem } from '../lib/passwords.js';
import { parseApiKey } from '../lib/secrets.js';

/** The demo tenant the dev command creates, so that the README walk-through works on a fresh machine. */
export const DEMO_ACCOUNT = { id: 'demo', name: 'Demo', environments: ['sandbox', 'production'] } as const;
export const DEMO_ADMIN_EMAIL = 'admin@example.com';

export type DemoEnvironment = (typeof DEMO_ACCOUNT.environments)[number];

export interface DemoKeyFiles {
  /** Files that keep the generated key of each environment, because the database stores only its hash. */
  sandbox: string;
  production: string;
}

function readKeyFile(file: string): string | undefined {
  if (!existsSync(file)) {
    return undefined;
  }
  return readFileSync(file, 'utf8').trim() || undefined;
}

/**
 * Makes the demo administrator an active administrator of `environment` the first time, and returns
 * their user id. A membership that exists is left as it is, so a demo administrator deactivated
 * through the API stays deactivated across restarts.
 */
async function ensureDemoAdministrator(db: Knex, environmentId: string, logger: Logger): Promise<string> {
  const membership = await db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .where({ 'users.email_normalized': normalizeEmail(DEMO_ADMIN_EMAIL), 'memberships.environment_id': environmentId })
    .first('memberships.user_id as userId', 'memberships.status as status');
  if (!membership) {
    const created = await ensureActiveMember(db, {
      accountId: DEMO_ACCOUNT.id,
      environmentId,
      email: DEMO_ADMIN_EMAIL,
      roles: ['administrator'],
    });
    return created.userId;
  }
  if (membership.status !== 'active') {
    logger.warn(
      { email: DEMO_ADMIN_EMAIL, status: membership.status },
      'the demo administrator is not active, so the API rejects their keys; delete .data to start over',
    );
  }
  return membership.userId;
}

/**
 * Returns a working API key of the demo administrator for `environment`: `presetKey` when given, else
 * the key kept in `keyFile`, else a new key that is then written to `keyFile` with mode 0600. A kept key
 * is stored again when the database no longer has it, as after a database reset, and replaced when it
 * was revoked.
 */
async function ensureDemoApiKey(
  db: Knex,
  input: { userId: string; environmentId: string; environment: DemoEnvironment; keyFile: string; presetKey?: string },
): Promise<string> {
  const keyRow = { userId: input.userId, accountId: DEMO_ACCOUNT.id, environmentId: input.environmentId, name: `Demo administrator (${input.environment})` };
  const fileKey = readKeyFile(input.keyFile);
  // A damaged key file is replaced rather than trusted.
  const keptKey = input.presetKey ?? (fileKey && parseApiKey(fileKey) ? fileKey : undefined);

  if (keptKey !== undefined) {
    const stored = await createApiKey(db, { ...keyRow, presetKey: keptKey });
    const row = await db('api_keys').where({ id: stored.id }).first('revoked_at');
    if (!row.revoked_at) {
      return keptKey;
    }
    if (input.presetKey !== undefined) {
      throw new Error('DEV_ADMIN_API_KEY names a revoked API key. Unset it to use a generated key, or set it to another key.');
    }
  }

  const created = await createApiKey(db, keyRow);
  writeFileSync(input.keyFile, `${created.key}\n`, { mode: 0o600 });
  return created.key;
}

/**
 * Creates the demo account with its sandbox and production environments and an administrator in each,
 * and returns an API key of that administrator for each environment. Safe to run on every start.
 * `sandboxPresetKey` (DEV_ADMIN_API_KEY) replaces the generated sandbox key.
 */
export async function seedDemoAccount(
  db: Knex,
  options: { keyFiles: DemoKeyFiles; sandboxPresetKey?: string; logger: Logger },
): Promise<Record<DemoEnvironment, string>> {
  if (options.sandboxPresetKey !== undefined && !parseApiKey(options.sandboxPresetKey)) {
    throw new Error(
      'DEV_ADMIN_API_KEY must have the format of generated keys, lc_<12 hex characters>_<43 base64url characters>; ' +
        'unset it to have one generated.',
    );
  }

  await createAccount(db, { id: DEMO_ACCOUNT.id, name: DEMO_ACCOUNT.name, environments: [...DEMO_ACCOUNT.environments] });

  const keys = {} as Record<DemoEnvironment, string>;
  for (const environment of DEMO_ACCOUNT.environments) {
    const environmentRow = await findEnvironment(db, DEMO_ACCOUNT.id, environment);
    if (!environmentRow) {
      throw new Error(`The demo environment ${DEMO_ACCOUNT.id}/${environment} was not created.`);
    }
    const userId = await ensureDemoAdministrator(db, environmentRow.id, options.logger);
    keys[environment] = await ensureDemoApiKey(db, {
      userId,
      environmentId: environmentRow.id,
      environment,
      keyFile: options.keyFiles[environment],
      ...(environment === 'sandbox' && options.sandboxPresetKey !== undefined ? { presetKey: options.sandboxPresetKey } : {}),
    });
  }
  return keys;
}

/**
 * Gives the demo administrator a password the first time, so that a session token (POST /v1/auth/login)
 * is at hand for the routes that need one. The password is DEV_ADMIN_PASSWORD when set, else generated
 * and kept in `passwordFile` (mode 0600); a password changed later through the API is left alone.
 */
export async function ensureDemoPassword(db: Knex, options: { passwordFile: string; presetPassword?: string }): Promise<string> {
  const password = options.presetPassword ?? readKeyFile(options.passwordFile) ?? randomBytes(12).toString('base64url');
  const problem = passwordProblem(password, DEMO_ADMIN_EMAIL);
  if (problem) {
    throw new Error(`DEV_ADMIN_PASSWORD ${problem}.`);
  }
  writeFileSync(options.passwordFile, `${password}\n`, { mode: 0o600 });

  const user = await db('users').where({ email_normalized: normalizeEmail(DEMO_ADMIN_EMAIL) }).first('id', 'password_hash');
  if (user && user.password_hash === null) {
    await db('users').where({ id: user.id }).update({ password_hash: await hashPassword(password), updated_at: db.fn.now() });
  }
  return password;
}
