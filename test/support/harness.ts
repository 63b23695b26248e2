import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';

import { Client, Connection } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { Knex } from 'knex';
import { pino, type Logger } from 'pino';
import supertest from 'supertest';

import type { ActivityDependencies } from '../../activities/dependencies.js';
import { createApp } from '../../api/app.js';
import { createDatabase, migrateToLatest } from '../../db/connection.js';
import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../../db/bootstrap.js';
import { loadConfig, type Config } from '../../lib/config.js';
import { dataConverter } from '../../lib/data-converter.js';
import { AesGcmPayloadCodec } from '../../lib/payload-codec.js';
import { createEmailSender } from '../../lib/email/index.js';
import { deriveKey } from '../../lib/secrets.js';
import { connectWorker, createWorker } from '../../worker/create-worker.js';
import { installTemporalRuntime } from '../../worker/temporal-logger.js';
import { FakeSendgrid } from './fake-sendgrid.js';
import { describeLeaks, recordSentSecrets, scanForSecrets } from './secret-scan.js';

export interface HarnessOptions {
  /** Environment variables on top of the test defaults, for example `{ INVITE_TTL: '5s' }`. */
  env?: Record<string, string>;
  /** False to run no worker in the test process, for tests that run it as a child process. */
  inProcessWorker?: boolean;
}

export interface Seed {
  accountId: string;
  sandboxId: string;
  productionId: string;
  adminUserId: string;
  adminKey: string;
}

export interface Harness {
  config: Config;
  db: Knex;
  temporal: Client;
  sendgrid: FakeSendgrid;
  api: ReturnType<typeof supertest>;
  seed: Seed;
  /** The environment variables the configuration was read from, for child processes. */
  env: Record<string, string>;
  /** Every line the API and worker logged, as JSON text. */
  logLines: string[];
  startWorker(): Promise<void>;
  stopWorker(): Promise<void>;
  /** The dependencies the worker gives activity factories, for tests that call activities directly. */
  activityDependencies(): ActivityDependencies;
  /** Sends the invitation request of the API as the seeded administrator, to the sandbox; await it for the response. */
  invite(email: string, roles?: string[]): supertest.Test;
  /** Adds an active member with the given roles and returns an API key for them. */
  addMember(email: string, roles: string[], environmentId?: string): Promise<{ userId: string; key: string }>;
  close(): Promise<void>;
}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the tests through Jest, whose global setup provides it`);
  }
  return value;
}

/**
 * The payload codec key of every test run. It is fixed, so that histories recorded by one run decrypt in
 * test/replay.test.ts; it protects nothing but test data.
 */
export const TEST_PAYLOAD_KEYS = 'test-2026:bGlmZWN5Y2xlIHRlc3QgcGF5bG9hZCBrZXkgMjAyNiE=';

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export function uniqueEmail(name = 'person'): string {
  return `${name}.${randomBytes(4).toString('hex')}@example.com`;
}

/** Starts the API and a worker on a task queue of their own, against the run's Postgres and Temporal. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  recordSentSecrets();
  const sendgrid = new FakeSendgrid();
  await sendgrid.start();

  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    APP_BASE_URL: 'http://127.0.0.1:3999',
    APP_SECRET: randomBytes(32).toString('base64'),
    DATABASE_URL: requireEnv('LIFECYCLE_TEST_DATABASE_URL'),
    DATABASE_POOL_MAX: '10',
    TEMPORAL_ADDRESS: requireEnv('LIFECYCLE_TEST_TEMPORAL_ADDRESS'),
    TEMPORAL_TASK_QUEUE: uniqueId('test-queue'),
    EMAIL_PROVIDER: 'sendgrid',
    SENDGRID_API_KEY: 'SG.test-key',
    SENDGRID_API_URL: sendgrid.url,
    EMAIL_FROM: 'invitations@lifecycle.test',
    TOKEN_RATE_LIMIT_PER_MINUTE: '10000',
    PAYLOAD_ENCRYPTION_KEYS: TEST_PAYLOAD_KEYS,
    API_RATE_LIMIT_PER_MINUTE: '10000',
    ...options.env,
  };
  const config = loadConfig(env);

  const logLines: string[] = [];
  const logger: Logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        callback();
      },
    }),
  );

  // The SDK's own lines go to the captured log too, so tests can check that no secret reaches them.
  installTemporalRuntime(logger);

  const db = createDatabase({ url: config.databaseUrl, poolMax: config.databasePoolMax });
  // The first test file migrates the run's database; for the others this finds nothing to do.
  await migrateToLatest(db);
  // lazy() skips the readiness wait, whose 10 s grpc-js deadline timer would keep Jest alive after the run.
  const connection = Connection.lazy({ address: config.temporal.address });
  const temporal = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });
  const api = supertest(createApp({ config, db, temporal, logger }));

  const accountId = uniqueId('acct');
  await createAccount(db, { id: accountId, name: `Account ${accountId}`, environments: ['sandbox', 'production'] });
  const sandboxId = (await findEnvironment(db, accountId, 'sandbox'))!.id;
  const productionId = (await findEnvironment(db, accountId, 'production'))!.id;

  async function addMember(email: string, roles: string[], environmentId = sandboxId) {
    const { userId } = await ensureActiveMember(db, { accountId, environmentId, email, roles });
    const { key } = await createApiKey(db, { userId, accountId, environmentId, name: `test key for ${email}` });
    return { userId, key };
  }
  const admin = await addMember(uniqueEmail('admin'), ['administrator']);

  let worker: Worker | undefined;
  let workerRun: Promise<void> | undefined;
  let workerConnection: NativeConnection | undefined;

  async function startWorker() {
    workerConnection = await connectWorker(config);
    worker = await createWorker({ config, db, email: createEmailSender(config, logger), logger, connection: workerConnection, temporal });
    workerRun = worker.run();
  }

  async function stopWorker() {
    if (worker && worker.getState() === 'RUNNING') {
      worker.shutdown();
    }
    await workerRun;
    await workerConnection?.close();
    worker = undefined;
    workerRun = undefined;
    workerConnection = undefined;
  }

  if (options.inProcessWorker !== false) {
    await startWorker();
  }

  return {
    config,
    env,
    db,
    temporal,
    sendgrid,
    api,
    seed: { accountId, sandboxId, productionId, adminUserId: admin.userId, adminKey: admin.key },
    logLines,
    startWorker,
    stopWorker,
    activityDependencies: () => ({
      config,
      db,
      email: createEmailSender(config, logger),
      tokenKey: deriveKey(config.appSecret, 'invitation-token'),
      temporal,
    }),
    addMember,
    invite: (email, roles = ['customer_viewer']) =>
      api
        .post(`/v1/accounts/${accountId}/environments/sandbox/users`)
        .set('Authorization', `Bearer ${admin.key}`)
        .send({ email, roles }),
    // Every test file ends with a scan of its logs and workflow histories, so a secret that leaks in
    // any test fails that file's afterAll, whatever order Jest runs the files in.
    async close() {
      let leaks: Awaited<ReturnType<typeof scanForSecrets>> = [];
      try {
        leaks = await scanForSecrets({
          logLines,
          sendgrid,
          temporal,
          payloadCodec: new AesGcmPayloadCodec(config.temporal.payloadKeys),
          taskQueue: config.temporal.taskQueue,
          configuredSecrets: [config.appSecret, env.SENDGRID_API_KEY ?? '', ...(process.env.SSO_ENCRYPTION_KEYS ?? '').split(',').map((entry) => entry.split(':')[1] ?? '')],
        });
      } finally {
        await stopWorker();
        await connection.close();
        await db.destroy();
        await sendgrid.stop();
      }
      if (leaks.length > 0) {
        throw new Error(describeLeaks(leaks));
      }
    },
  };
}

/** Polls `check` until it returns a value other than undefined; fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} was not met within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
