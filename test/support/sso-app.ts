import { randomBytes } from 'node:crypto';
import { createServer as createNetServer } from 'node:net';
import type { Server } from 'node:http';

import { pino } from 'pino';

import { createApp } from '../../api/app.js';
import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../../db/bootstrap.js';
import { generateOperatorKey } from '../../lib/secrets.js';
import { sealSecret } from '../../lib/sso/secret-box.js';
import { loadSsoConfig } from '../../lib/sso-config.js';
import { startHarness, uniqueId, type Harness } from './harness.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface SsoHarness {
  harness: Harness;
  /** APP_BASE_URL, where the app listens for real HTTP, so that providers can redirect back to it. */
  baseUrl: string;
  operatorKey: string;
  close(): Promise<void>;
}

/**
 * Starts the usual harness plus the app on a real loopback port. The SSO variables are read from
 * process.env (lib/sso-config.ts), so they are set there before the app and the worker start.
 */
export async function startSsoHarness(ssoEnv: Record<string, string>, options: { port?: number; env?: Record<string, string> } = {}): Promise<SsoHarness> {
  const defaults: Record<string, string> = {
    SSO_ENCRYPTION_KEYS: `k2:${randomBytes(32).toString('base64')},k1:${randomBytes(32).toString('base64')}`,
    SSO_ALLOW_INSECURE_ISSUERS: 'true',
    SSO_HTTP_TIMEOUT: '5s',
    OPERATOR_EMAIL: 'operators@lifecycle.test',
  };
  Object.assign(process.env, defaults, ssoEnv);

  const port = options.port ?? (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const harness = await startHarness({ env: { ...options.env, APP_BASE_URL: baseUrl } });
  const app = createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) });
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(port, '127.0.0.1', () => resolve(listening));
  });

  const operator = generateOperatorKey();
  await harness.db('operator_api_keys').insert({ name: 'sso tests', prefix: operator.prefix, secret_hash: operator.secretHash });

  return {
    harness,
    baseUrl,
    operatorKey: operator.key,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await harness.close();
    },
  };
}

/** Creates an account with a sandbox environment and no members, for tests that need an account of their own. */
export async function createTestAccount(harness: Harness): Promise<{ accountId: string; environmentId: string }> {
  const accountId = uniqueId('acct');
  await createAccount(harness.db, { id: accountId, name: `Account ${accountId}`, environments: ['sandbox'] });
  const environmentId = (await findEnvironment(harness.db, accountId, 'sandbox'))!.id;
  return { accountId, environmentId };
}

export async function addAccountMember(harness: Harness, accountId: string, environmentId: string, email: string, roles = ['customer_viewer']) {
  const { userId } = await ensureActiveMember(harness.db, { accountId, environmentId, email, roles });
  const { key } = await createApiKey(harness.db, { userId, accountId, environmentId, name: `key for ${email}` });
  return { userId, key };
}

/** Stores an active Okta connection directly, with its secret sealed as the API would. */
export async function insertActiveOktaConnection(
  harness: Harness,
  accountId: string,
  provider: { issuer: string; clientId: string; clientSecret: string },
): Promise<string> {
  const [{ id }] = await harness.db('sso_connections')
    .insert({ account_id: accountId, type: 'okta', status: 'active', client_id: provider.clientId, issuer: provider.issuer, credentials_version: 1 })
    .returning('id');
  const sealed = sealSecret(loadSsoConfig().encryptionKeys, provider.clientSecret, id);
  await harness.db('sso_connections').where({ id }).update({ client_secret_ciphertext: sealed.ciphertext, client_secret_key_id: sealed.keyId });
  return id;
}
