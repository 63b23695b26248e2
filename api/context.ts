import type { Client } from '@temporalio/client';
import type { Knex } from 'knex';
import type { Logger } from 'pino';

import type { Config } from '../lib/config.js';

/** Dependencies of the HTTP layer. Tests build them with real connections. */
export interface ApiDependencies {
  config: Config;
  db: Knex;
  temporal: Client;
  logger: Logger;
}

/** The caller, resolved from an API key. */
export interface Principal {
  apiKeyId: string;
  userId: string;
  accountId: string;
  environmentId: string;
  environment: string;
  roles: string[];
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}
