import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client, Connection } from '@temporalio/client';
import knexFactory, { type Knex } from 'knex';
import { pino } from 'pino';

import { createApp } from '../api/app.js';
import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { createDatabase, migrateToLatest } from '../db/connection.js';
import { loadConfig, type Config } from '../lib/config.js';
import { dataConverter } from '../lib/data-converter.js';
import { redactDatabaseUrl } from '../scripts/database-config.js';
import { findOrBuildTemporalCli, temporalCliVersion } from '../scripts/temporal-cli.js';
import { startCliDevServer } from '../scripts/temporal-dev-server.js';
import { FakeSendgrid } from '../test/support/fake-sendgrid.js';
import { WorkerProcess } from '../test/support/worker-process.js';
import { installTemporalRuntime } from '../worker/temporal-logger.js';
import type { Cleanup } from './cleanup.js';
import { findChildProcess, type CpuSources } from './resources.js';

const LOOPBACK = '127.0.0.1';
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const TEMPORAL_READY_TIMEOUT_MS = 60_000;
const BASELINE_WORKER = fileURLToPath(new URL('./baseline/worker.ts', import.meta.url));

/**
 * The benchmark's account. Invites and sign-ins use `environment`; the list benchmark fills
 * `listingEnvironment`, so that its member counts are exact whatever ran before.
 */
export const BENCH_ACCOUNT = { id: 'bench', name: 'Benchmark', environment: 'sandbox', listingEnvironment: 'listing' } as const;
export const BASELINE_TASK_QUEUE = 'bench-baseline';

/** Everything the measurements need from the running stack. */
export interface BenchStack {
  /** The API's base URL, http://127.0.0.1:<port>. */
  baseUrl: string;
  config: Config;
  /** The API's connection pool. The list benchmark also inserts members through it. */
  db: Knex;
  temporal: Client;
  sendgrid: FakeSendgrid;
  environmentId: string;
  /** API key of an administrator of the benchmark environment. */
  adminKey: string;
  listingEnvironmentId: string;
  /** API key of the same administrator in the listing environment. */
  listingAdminKey: string;
  /** The worker's child process, whose resident memory the worker-memory benchmark reads. */
  workerPid: number;
  databaseName: string;
  postgresVersion: string;
  temporalAddress: string;
  /** True when the benchmark started the Temporal dev server, false for one given by address. */
  temporalStartedHere: boolean;
  /** The version the Temporal Service reports, such as 1.29.1. */
  temporalServerVersion: string;
  /** The output of `temporal --version`, or "not started here" for a Temporal Service given by address. */
  temporalCliVersion: string;
  /** The processes whose CPU time the resource figures split out. */
  cpuSources: CpuSources;
}

/** Returns a TCP port that was free on loopback a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve((server.address() as AddressInfo).port));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function createBenchDatabase(adminUrl: string, cleanup: Cleanup): Promise<{ url: string; name: string }> {
  const name = `lifecycle_bench_${process.pid}`;
  const admin = knexFactory({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
  try {
    await admin.raw('CREATE DATABASE ??', [name]);
  } catch (error) {
    throw new Error(
      `Creating the database ${name} on ${redactDatabaseUrl(adminUrl)} failed: ${(error as Error).message}. ` +
        'Start Postgres there, or set BENCH_DATABASE_URL to a server where this user may create databases.',
    );
  } finally {
    await admin.destroy();
  }

  cleanup.add(`dropping database ${name}`, 20_000, async () => {
    const dropper = knexFactory({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
    try {
      await dropper.raw('DROP DATABASE IF EXISTS ?? WITH (FORCE)', [name]);
    } finally {
      await dropper.destroy();
    }
  });

  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), name };
}

/** Starts a Temporal dev server with in-memory state on free loopback ports and registers its stop step. */
async function startTemporal(
  workDir: string,
  cleanup: Cleanup,
  onFatal: (error: Error) => void,
  progress: (message: string) => void,
): Promise<{ address: string; cliVersion: string }> {
  progress('starting the Temporal dev server');
  const cliPath = await findOrBuildTemporalCli({ cacheDir: join(REPO_ROOT, '.data', 'bin'), log: progress });
  if (!cliPath) {
    throw new Error(
      'No Temporal CLI found. Set TEMPORAL_CLI_PATH, put `temporal` on PATH, or install Go so that the CLI can be built.',
    );
  }
  const cliVersion = await temporalCliVersion(cliPath);
  // NOTE: startCliDevServer has no headless option, so the server's Web UI also listens, on loopback.
  const server = await startCliDevServer(cliPath, {
    ip: LOOPBACK,
    port: await freePort(),
    uiPort: await freePort(),
    // An empty file name keeps the server's state in memory, as when --db-filename is left out.
    dbFilename: '',
    namespace: 'default',
    readyTimeoutMs: TEMPORAL_READY_TIMEOUT_MS,
    // The server then hands an activity that a workflow task schedules straight back to the worker that
    // completed the task, when it has a free slot, instead of through the task queue. Off by default.
    dynamicConfig: { 'system.enableActivityEagerExecution': 'true' },
    logFile: join(workDir, 'temporal-server.log'),
    onUnexpectedExit: (reason) => onFatal(new Error(`The Temporal dev server exited: ${reason}`)),
  });
  cleanup.add('Temporal dev server', 25_000, () => server.stop());
  return { address: server.address, cliVersion };
}

/**
 * Starts the whole service on loopback: a Temporal dev server with in-memory state (unless
 * `temporalAddress` names a running one), a database of its own on the Postgres server at
 * `adminDatabaseUrl`, a fake SendGrid, the worker and the baseline worker in child processes, and
 * the API in this process. Each part registers its stop step on `cleanup` as soon as it runs, so a failure half-way still stops the rest.
 * `onFatal` receives a Temporal server that stopped on its own.
 */
export async function startStack(input: {
  adminDatabaseUrl: string;
  /** A running Temporal Service to use. When undefined, a dev server is started. */
  temporalAddress: string | undefined;
  /** Folder that receives the logs. */
  workDir: string;
  cleanup: Cleanup;
  onFatal: (error: Error) => void;
  progress: (message: string) => void;
  /** Folder where the worker writes a V8 CPU profile (node --cpu-prof) when it stops; undefined for none. */
  workerProfileDir?: string | undefined;
}): Promise<BenchStack> {
  const { cleanup, progress, workDir } = input;

  progress('creating the database');
  const database = await createBenchDatabase(input.adminDatabaseUrl, cleanup);

  const temporal = input.temporalAddress
    ? { address: input.temporalAddress, cliVersion: 'not started here', startedHere: false }
    : { ...(await startTemporal(workDir, cleanup, input.onFatal, progress)), startedHere: true };

  const sendgrid = new FakeSendgrid();
  await sendgrid.start();
  cleanup.add('fake SendGrid', 5_000, () => sendgrid.stop());

  // The port is needed for APP_BASE_URL, so the server listens first and gets the app once it exists.
  const server = createServer();
  const port = await listen(server);
  cleanup.add('API server', 10_000, () => closeServer(server));
  const baseUrl = `http://${LOOPBACK}:${port}`;

  const appEnv: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    APP_BASE_URL: baseUrl,
    APP_SECRET: randomBytes(32).toString('base64'),
    DATABASE_URL: database.url,
    DATABASE_POOL_MAX: '10',
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: 'lifecycle-bench',
    EMAIL_PROVIDER: 'sendgrid',
    // The fake accepts any key; this one only satisfies the configuration check.
    SENDGRID_API_KEY: 'SG.bench-key',
    SENDGRID_API_URL: sendgrid.url,
    EMAIL_FROM: 'invitations@bench.example',
    // Every request comes from 127.0.0.1, so the per-address limits on the accept and sign-in routes
    // are lifted, and the sign-in benchmark signs the same people in many times.
    TOKEN_RATE_LIMIT_PER_MINUTE: '100000',
    LOGIN_RATE_LIMIT_PER_EMAIL: '100000',
    LOGIN_RATE_LIMIT_PER_IP: '100000',
    // One API key sends every request, and the default of 600 a minute would cap the invitation rate at 10 per second.
    API_RATE_LIMIT_PER_MINUTE: '1000000',
  };
  const config = loadConfig(appEnv);

  // Logs go to a file at the production level, so that their cost is part of the figures but not of stdout.
  // The worker's logs go to its pipe, which the bench process reads and drops.
  const logger = pino(
    { name: 'lifecycle-bench', level: config.logLevel, redact: { paths: ['req.headers.authorization'], censor: '[Redacted]' } },
    pino.destination({ dest: join(workDir, 'lifecycle.log'), sync: true }),
  );
  installTemporalRuntime(logger);

  // The worker runs in its own process, as in production, so that its memory and CPU can be read apart.
  const db = createDatabase({ url: config.databaseUrl, poolMax: config.databasePoolMax });
  cleanup.add('API database pool', 5_000, () => db.destroy());
  await migrateToLatest(db);
  const postgresVersion = (await db.raw('SHOW server_version')).rows[0].server_version as string;

  await createAccount(db, {
    id: BENCH_ACCOUNT.id,
    name: BENCH_ACCOUNT.name,
    environments: [BENCH_ACCOUNT.environment, BENCH_ACCOUNT.listingEnvironment],
  });
  const environmentId = (await findEnvironment(db, BENCH_ACCOUNT.id, BENCH_ACCOUNT.environment))!.id;
  const listingEnvironmentId = (await findEnvironment(db, BENCH_ACCOUNT.id, BENCH_ACCOUNT.listingEnvironment))!.id;
  const adminKeys: string[] = [];
  for (const id of [environmentId, listingEnvironmentId]) {
    const admin = await ensureActiveMember(db, { accountId: BENCH_ACCOUNT.id, environmentId: id, email: 'admin@bench.example', roles: ['administrator'] });
    const { key } = await createApiKey(db, { userId: admin.userId, accountId: BENCH_ACCOUNT.id, environmentId: id, name: 'benchmark' });
    adminKeys.push(key);
  }

  const clientConnection = await Connection.connect({ address: config.temporal.address });
  cleanup.addLast('Temporal client connection', 5_000, () => clientConnection.close());
  // The baseline starts its workflows through the raw client; the API's client encrypts payloads, as in production.
  const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace });
  const productClient = new Client({ connection: clientConnection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });
  const { serverVersion } = await clientConnection.workflowService.getSystemInfo({});

  progress('starting the worker and the baseline worker, each in its own process (both bundle workflow code)');
  const worker = new WorkerProcess(appEnv, undefined, input.workerProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${input.workerProfileDir}`] : []);
  const baselineWorker = new WorkerProcess(
    {
      TEMPORAL_ADDRESS: config.temporal.address,
      BASELINE_TASK_QUEUE,
      // The product worker's bound on concurrent activities, from createWorker.
      MAX_ACTIVITIES: String(Math.max(4, config.databasePoolMax * 2)),
    },
    BASELINE_WORKER,
  );
  cleanup.add('worker process', 20_000, () => worker.stop());
  cleanup.add('baseline worker process', 20_000, () => baselineWorker.stop());
  await Promise.all([worker.start(), baselineWorker.start()]);

  // The SSO routes read their settings from process.env when the app is created. The sign-in benchmark's
  // OpenID provider is plain HTTP on loopback, which they accept only with SSO_ALLOW_INSECURE_ISSUERS, and
  // that flag is refused only when process.env.NODE_ENV is production, which the bench process does not set.
  process.env.SSO_ENCRYPTION_KEYS = `bench:${randomBytes(32).toString('base64')}`;
  process.env.SSO_ALLOW_INSECURE_ISSUERS = 'true';
  server.on('request', createApp({ config, db, temporal: productClient, logger }));
  progress(`API listening on ${baseUrl}`);

  return {
    baseUrl,
    config,
    db,
    temporal: client,
    sendgrid,
    environmentId,
    adminKey: adminKeys[0]!,
    listingEnvironmentId,
    listingAdminKey: adminKeys[1]!,
    workerPid: worker.pid!,
    databaseName: database.name,
    postgresVersion,
    temporalAddress: temporal.address,
    temporalStartedHere: temporal.startedHere,
    temporalServerVersion: serverVersion || 'unknown',
    temporalCliVersion: temporal.cliVersion,
    cpuSources: {
      temporalServerPid: temporal.startedHere ? findChildProcess('temporal') : undefined,
      workerPid: worker.pid!,
      baselineWorkerPid: baselineWorker.pid!,
      postgresPids: async () => {
        const result = await db.raw('SELECT pid FROM pg_stat_activity WHERE datname = current_database()');
        return (result.rows as { pid: number }[]).map((row) => row.pid);
      },
    },
  };
}

/** Creates the folder for the run's logs: the API and worker log, and the Temporal server's output. */
export function createWorkDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'lifecycle-bench-'));
}

export async function removeWorkDir(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true });
}
