import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client, Connection } from '@temporalio/client';
import { pino } from 'pino';

import { createApp } from '../api/app.js';
import { createDatabase, migrateToLatest } from '../db/connection.js';
import { ConfigError, loadConfig, type Config } from '../lib/config.js';
import { createEmailSender } from '../lib/email/index.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { dataConverter } from '../lib/data-converter.js';
import { connectWorker, createWorker } from '../worker/create-worker.js';
import { installTemporalRuntime } from '../worker/temporal-logger.js';
import { redactDatabaseUrl } from './database-config.js';
import { DEMO_ACCOUNT, DEMO_ADMIN_EMAIL, ensureDemoPassword, seedDemoAccount, type DemoEnvironment } from './dev-seed.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';
import { findOrBuildTemporalCli } from './temporal-cli.js';
import { registerSearchAttributes } from './search-attributes.js';
import { startCliDevServer, startDownloadedDevServer, type TemporalDevServer } from './temporal-dev-server.js';
import { TIMED_OUT, withTimeout } from './timeouts.js';

/**
 * `npm run dev`: brings up the whole service on one machine in one process. It starts Postgres and a
 * Temporal dev server unless DATABASE_URL and TEMPORAL_ADDRESS point at running ones, applies the
 * migrations, seeds a demo account, and runs the worker and the API. Everything it keeps lives in
 * `.data/`; deleting that folder starts over.
 */

// Resolved from this file, so the command works from any working directory; it runs under tsx only.
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATA_DIR = join(REPO_ROOT, '.data');
const DATA_FILES = {
  appSecret: join(DATA_DIR, 'app-secret'),
  sandboxKey: join(DATA_DIR, 'dev-admin-api-key'),
  productionKey: join(DATA_DIR, 'dev-admin-api-key-production'),
  adminPassword: join(DATA_DIR, 'dev-admin-password'),
  postgres: join(DATA_DIR, 'postgres'),
  temporalDb: join(DATA_DIR, 'temporal.sqlite'),
  temporalLog: join(DATA_DIR, 'temporal-server.log'),
  bin: join(DATA_DIR, 'bin'),
};

/** The dev stack listens on loopback only, because it prints demo API keys and writes live invitation links to its log. */
const LOOPBACK = '127.0.0.1';
const EMBEDDED_POSTGRES_PORT = 54329;
const EMBEDDED_POSTGRES_DATABASE = 'lifecycle';
const TEMPORAL_PORT = 7233;
const TEMPORAL_UI_PORT = 8233;
const TEMPORAL_READY_TIMEOUT_MS = 60_000;

/** A step that stops something the dev command started, with the longest time it may take. */
interface StopStep {
  name: string;
  timeoutMs: number;
  run: () => Promise<unknown>;
}

/** Stops what was started, newest first, so the API closes before the worker and the worker before its servers. */
class StopSteps {
  private readonly steps: StopStep[] = [];

  constructor(private readonly logger: Logger) {}

  add(name: string, timeoutMs: number, run: () => Promise<unknown>): void {
    this.steps.push({ name, timeoutMs, run });
  }

  async runAll(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        const result = await withTimeout(Promise.resolve().then(step.run), step.timeoutMs);
        if (result === TIMED_OUT) {
          this.logger.warn({ step: step.name, timeoutMs: step.timeoutMs }, 'stopping timed out; moving on');
        }
      } catch (error) {
        this.logger.warn({ err: error, step: step.name }, 'stopping failed; moving on');
      }
    }
  }
}

function readOrCreateSecretFile(file: string, create: () => string): string {
  if (existsSync(file)) {
    const value = readFileSync(file, 'utf8').trim();
    if (value) {
      return value;
    }
  }
  const value = create();
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return value;
}

/** Fills the variables a developer would otherwise have to set; values already set win. */
function applyDevelopmentDefaults(env: NodeJS.ProcessEnv): void {
  env.NODE_ENV ??= 'development';
  env.PORT ??= '3000';
  env.APP_BASE_URL ??= `http://localhost:${env.PORT}`;
  env.APP_SECRET ??= readOrCreateSecretFile(DATA_FILES.appSecret, () => randomBytes(32).toString('base64url'));
}

function exitOnConfigError(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(78);
  }
  throw error;
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'EADDRINUSE' ? new Error(`Port ${port} on ${host} is already in use; set PORT to another port.`) : error);
    });
    server.listen(port, host, () => resolve());
  });
}

function closeServer(server: Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    // Requests still running after SHUTDOWN_TIMEOUT are cut off.
    setTimeout(() => server.closeAllConnections(), timeoutMs).unref();
  });
}

async function startTemporal(
  logger: Logger,
  namespace: string,
  onUnexpectedExit: (reason: string) => void,
): Promise<TemporalDevServer> {
  const options = {
    ip: LOOPBACK,
    port: TEMPORAL_PORT,
    uiPort: TEMPORAL_UI_PORT,
    dbFilename: DATA_FILES.temporalDb,
    namespace,
    readyTimeoutMs: TEMPORAL_READY_TIMEOUT_MS,
  };

  const cliPath = await findOrBuildTemporalCli({ cacheDir: DATA_FILES.bin, log: (message) => logger.info(message) });
  if (cliPath) {
    logger.info({ cliPath, logFile: DATA_FILES.temporalLog }, 'starting the Temporal dev server');
    return startCliDevServer(cliPath, { ...options, logFile: DATA_FILES.temporalLog, onUnexpectedExit });
  }

  logger.warn(
    { downloadDir: DATA_FILES.bin },
    'no Temporal CLI found and Go is not installed; downloading a CLI release through the Temporal SDK',
  );
  try {
    return await startDownloadedDevServer({ ...options, downloadDir: DATA_FILES.bin });
  } catch (error) {
    throw new Error(
      `Starting a Temporal dev server downloaded through the SDK failed: ${(error as Error).message}\n` +
        'Install the Temporal CLI (https://docs.temporal.io/cli) or Go, point TEMPORAL_CLI_PATH at a CLI, ' +
        'or set TEMPORAL_ADDRESS to a Temporal Service that is already running.',
    );
  }
}

/**
 * Writes the summary through the logger's own output stream. pino writes asynchronously, so text
 * written straight to stdout could land before log lines that were logged earlier.
 */
function printSummary(
  logger: Logger,
  input: {
    config: Config;
    databaseUrl: string;
    embeddedPostgres: boolean;
    temporalUiUrl: string | undefined;
    keys: Record<DemoEnvironment, string>;
    adminPassword: string;
  },
): void {
  const { config, keys } = input;
  const apiUrl = `http://localhost:${config.port}`;
  const postgres = input.embeddedPostgres
    ? `${input.databaseUrl} (embedded, data in .data/postgres)`
    : redactDatabaseUrl(input.databaseUrl);
  const emails =
    config.email.provider === 'log' ? 'written to the log above (EMAIL_PROVIDER=log), not sent' : `sent through ${config.email.provider}`;
  const lines = [
    '',
    'Lifecycle is running.',
    '',
    `  API                 ${apiUrl}`,
    `  Temporal Web UI     ${input.temporalUiUrl ?? `(not started here; TEMPORAL_ADDRESS=${config.temporal.address})`}`,
    `  Temporal gRPC       ${config.temporal.address}, namespace ${config.temporal.namespace}`,
    `  Postgres            ${postgres}`,
    `  Emails              ${emails}`,
    '',
    `  Demo account "${DEMO_ACCOUNT.id}", administrator ${DEMO_ADMIN_EMAIL}`,
    `  API key, sandbox     ${keys.sandbox}`,
    `  API key, production  ${keys.production}`,
    `  Password             ${input.adminPassword} (for POST /v1/auth/login; kept in .data/dev-admin-password)`,
    '',
    '  Invite someone to the sandbox (README.md walks through the whole invitation):',
    `    curl -s -X POST ${apiUrl}/v1/accounts/${DEMO_ACCOUNT.id}/environments/sandbox/users \\`,
    `      -H "Authorization: Bearer ${keys.sandbox}" -H 'content-type: application/json' \\`,
    `      -d '{"email":"ada@example.com","roles":["customer_viewer"]}'`,
    '',
    '  Press Ctrl-C to stop.',
    '',
  ];
  const stream = (logger as unknown as Record<symbol, { write(text: string): void }>)[pino.symbols.streamSym]!;
  stream.write(`${lines.join('\n')}\n`);
}

async function main(): Promise<void> {
  // Others may pass through but not list it: the secrets inside are mode 0600, and when the command runs
  // as root, Postgres runs as the "postgres" user and must reach its data folder.
  mkdirSync(DATA_DIR, { recursive: true, mode: 0o711 });
  applyDevelopmentDefaults(process.env);

  // Checked before anything starts, with a stand-in for the database URL that is only known later.
  let config: Config;
  try {
    config = loadConfig({ ...process.env, DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://to-be-started' });
  } catch (error) {
    exitOnConfigError(error);
  }

  const logger = createLogger({ level: config.logLevel, name: 'lifecycle-dev' });
  // Must come before any other use of the Temporal SDK's runtime, the SDK's own dev server included.
  // The stop steps below shut the worker down after the API has drained, so the SDK must not do it first.
  installTemporalRuntime(logger, { handleSignals: false });

  const stopSteps = new StopSteps(logger);
  let stopping = false;
  const stop = async (reason: string, exitCode: number) => {
    if (stopping) {
      return;
    }
    stopping = true;
    logger.info({ reason }, 'stopping the dev stack');
    await stopSteps.runAll();
    logger.info('dev stack stopped');
    process.exit(exitCode);
  };
  let firstSignalAt = 0;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) {
        // tsx relays a Ctrl-C to this process a second time when the first is not acknowledged within 30 ms,
        // so a repeat within a second is that relay, not a person pressing Ctrl-C again.
        if (Date.now() - firstSignalAt < 1_000) {
          return;
        }
        logger.warn({ signal }, 'second signal while stopping; exiting now');
        process.exit(130);
      }
      firstSignalAt = Date.now();
      void stop(signal, 0);
    });
  }

  try {
    const embeddedPostgres = !process.env.DATABASE_URL;
    if (embeddedPostgres) {
      logger.info({ dataDir: DATA_FILES.postgres, port: EMBEDDED_POSTGRES_PORT }, 'starting embedded Postgres');
      const postgres = await startEmbeddedPostgres({
        dataDir: DATA_FILES.postgres,
        port: EMBEDDED_POSTGRES_PORT,
        database: EMBEDDED_POSTGRES_DATABASE,
        onOutput: (line) => logger.debug({ component: 'postgres' }, line),
      });
      stopSteps.add('embedded Postgres', 15_000, () => postgres.stop());
      process.env.DATABASE_URL = postgres.url;
    }

    let temporalUiUrl: string | undefined;
    if (!process.env.TEMPORAL_ADDRESS) {
      const temporalServer = await startTemporal(logger, config.temporal.namespace, (reason) => {
        logger.error({ reason }, 'the Temporal dev server exited');
        void stop('Temporal dev server exited', 1);
      });
      stopSteps.add('Temporal dev server', 15_000, () => temporalServer.stop());
      process.env.TEMPORAL_ADDRESS = temporalServer.address;
      temporalUiUrl = temporalServer.uiUrl;
    }

    try {
      config = loadConfig();
    } catch (error) {
      exitOnConfigError(error);
    }

    const db = createDatabase({ url: config.databaseUrl, poolMax: config.databasePoolMax });
    stopSteps.add('database pool', 5_000, () => db.destroy());
    const applied = await migrateToLatest(db);
    logger.info({ applied }, applied.length > 0 ? 'migrations applied' : 'database schema is up to date');
    const keys = await seedDemoAccount(db, {
      keyFiles: { sandbox: DATA_FILES.sandboxKey, production: DATA_FILES.productionKey },
      ...(process.env.DEV_ADMIN_API_KEY ? { sandboxPresetKey: process.env.DEV_ADMIN_API_KEY.trim() } : {}),
      logger,
    });
    const adminPassword = await ensureDemoPassword(db, {
      passwordFile: DATA_FILES.adminPassword,
      ...(process.env.DEV_ADMIN_PASSWORD ? { presetPassword: process.env.DEV_ADMIN_PASSWORD } : {}),
    });

    const clientConnection = await Connection.connect({ address: config.temporal.address });
    stopSteps.add('Temporal client connection', 5_000, () => clientConnection.close());
    const temporal = new Client({ connection: clientConnection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });
    // A Temporal Service started elsewhere (TEMPORAL_ADDRESS) may lack them; the dev server has them already.
    const registered = await registerSearchAttributes(clientConnection, config.temporal.namespace);
    if (registered.length > 0) {
      logger.info({ searchAttributes: registered }, 'registered search attributes');
    }

    const workerConnection = await connectWorker(config);
    stopSteps.add('Temporal worker connection', 5_000, () => workerConnection.close());
    logger.info('bundling the workflow code for the worker');
    const worker = await createWorker({ config, db, email: createEmailSender(config, logger), logger, connection: workerConnection, temporal });
    const workerRun = worker.run();
    workerRun.catch((error: unknown) => {
      if (!stopping) {
        logger.error({ err: error }, 'the worker stopped with an error');
        void stop('worker failed', 1);
      }
    });
    stopSteps.add('worker', 20_000, async () => {
      if (worker.getState() === 'RUNNING') {
        worker.shutdown();
      }
      await workerRun;
    });
    logger.info({ taskQueue: config.temporal.taskQueue }, 'worker started');

    const server = createServer(createApp({ config, db, temporal, logger }));
    await listen(server, config.port, LOOPBACK);
    stopSteps.add('HTTP server', config.shutdown.timeoutMs + 5_000, () => closeServer(server, config.shutdown.timeoutMs));
    logger.info({ port: config.port, host: LOOPBACK }, 'API listening');

    printSummary(logger, { config, databaseUrl: config.databaseUrl, embeddedPostgres, temporalUiUrl, keys, adminPassword });
  } catch (error) {
    logger.error({ err: error }, 'the dev stack failed to start');
    await stop('start-up failed', 1);
  }
}

void main();
