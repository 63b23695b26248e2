import { Client, Connection } from '@temporalio/client';

import { createDatabase } from '../db/connection.js';
import { dataConverter } from '../lib/data-converter.js';
import { loadConfigOrExit } from '../lib/config.js';
import { loadSsoConfigOrExit } from '../lib/sso-config.js';
import { createLogger } from '../lib/logger.js';
import { createApp } from './app.js';

/** Starts the HTTP API alone, as production runs it; the worker runs in its own process. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  loadSsoConfigOrExit();
  const logger = createLogger({ level: config.logLevel, name: 'lifecycle-api' });
  const db = createDatabase({ url: config.databaseUrl, poolMax: config.databasePoolMax });
  const connection = await Connection.connect({ address: config.temporal.address });
  const temporal = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });

  const server = createApp({ config, db, temporal, logger }).listen(config.port, () => {
    logger.info({ port: config.port }, 'API listening');
  });

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'API shutting down');
    server.close(() => {
      void Promise.allSettled([db.destroy(), connection.close()]).then(() => process.exit(0));
    });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`The API failed to start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
