import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { Client, Connection } from '@temporalio/client';

import { createDatabase } from '../db/connection.js';
import { dataConverter } from '../lib/data-converter.js';
import { loadConfigOrExit } from '../lib/config.js';
import { loadSsoConfigOrExit } from '../lib/sso-config.js';
import { createEmailSender } from '../lib/email/index.js';
import { createLogger } from '../lib/logger.js';
import { connectWorker, createWorker } from './create-worker.js';
import { installTemporalRuntime } from './temporal-logger.js';

/** Written by `npm run build`; when present the worker skips bundling at start-up. */
const PREBUILT_BUNDLE = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));

/** Starts the Temporal worker alone, as production runs it. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  loadSsoConfigOrExit();
  const logger = createLogger({ level: config.logLevel, name: 'lifecycle-worker' });
  installTemporalRuntime(logger, { metricsBindAddress: config.workerMetricsAddress });
  const db = createDatabase({ url: config.databaseUrl, poolMax: config.databasePoolMax });
  const connection = await connectWorker(config);
  const clientConnection = await Connection.connect({ address: config.temporal.address });
  const temporal = new Client({ connection: clientConnection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });
  const worker = await createWorker({
    temporal,
    config,
    db,
    email: createEmailSender(config, logger),
    logger,
    connection,
    ...(existsSync(PREBUILT_BUNDLE) ? { workflowBundle: { codePath: PREBUILT_BUNDLE } } : {}),
  });

  logger.info(
    {
      taskQueue: config.temporal.taskQueue,
      namespace: config.temporal.namespace,
      temporalAddress: config.temporal.address,
      metricsAddress: config.workerMetricsAddress ?? null,
      shutdownGraceTimeMs: config.shutdown.timeoutMs,
      maxCachedWorkflows: worker.options.maxCachedWorkflows,
    },
    'worker started',
  );
  // The SDK's Runtime stops the worker on SIGINT and SIGTERM: it stops polling, gives running activities
  // shutdownGraceTime to finish, and run() resolves once every task has been completed or handed back.
  await worker.run();
  const results = await Promise.allSettled([db.destroy(), connection.close(), clientConnection.close()]);
  for (const result of results) {
    if (result.status === 'rejected') {
      logger.error({ err: result.reason }, 'closing a connection failed during shutdown');
    }
  }
  logger.info('worker stopped');
}

main().catch((error: unknown) => {
  process.stderr.write(`The worker failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
