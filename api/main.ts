import { setTimeout as sleep } from 'node:timers/promises';

import { Client, Connection } from '@temporalio/client';

import { createDatabase } from '../db/connection.js';
import { dataConverter } from '../lib/data-converter.js';
import { loadConfigOrExit } from '../lib/config.js';
import { loadSsoConfigOrExit } from '../lib/sso-config.js';
import { createLogger } from '../lib/logger.js';
import { createApp } from './app.js';
import type { DrainState } from './context.js';

/** Starts the HTTP API alone, as production runs it; the worker runs in its own process. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  loadSsoConfigOrExit();
  const logger = createLogger({ level: config.logLevel, name: 'lifecycle-api' });
  const db = createDatabase({ url: config.databaseUrl, poolMax: config.databasePoolMax });
  const connection = await Connection.connect({ address: config.temporal.address });
  const temporal = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });
  const drain: DrainState = { draining: false };

  const server = createApp({ config, db, temporal, logger, drain }).listen(config.port, () => {
    logger.info({ port: config.port, temporalAddress: config.temporal.address, namespace: config.temporal.namespace }, 'API listening');
  });

  // Shutdown steps: /readyz returns 503 for SHUTDOWN_DRAIN_DELAY while the API still serves, so that a
  // load balancer stops sending requests. Then the listener closes and requests in flight get
  // SHUTDOWN_TIMEOUT to finish. Last, the database pool and the Temporal connection close.
  const shutdown = async (signal: string) => {
    const { drainDelayMs, timeoutMs } = config.shutdown;
    logger.info({ signal, drainDelayMs, timeoutMs }, 'API draining');
    drain.draining = true;
    await sleep(drainDelayMs);

    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timer = setTimeout(() => {
      logger.warn({ timeoutMs }, 'requests still running after the shutdown timeout; closing their connections');
      server.closeAllConnections();
    }, timeoutMs);
    await closed;
    clearTimeout(timer);

    const results = await Promise.allSettled([db.destroy(), connection.close()]);
    for (const result of results) {
      if (result.status === 'rejected') {
        logger.error({ err: result.reason }, 'closing a connection failed during shutdown');
      }
    }
    logger.info({ signal }, 'API stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`The API failed to start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
