import type { Client } from '@temporalio/client';
import type { Knex } from 'knex';

import type { Config } from '../lib/config.js';
import type { EmailSender } from '../lib/email/index.js';

/** Dependencies that every activity factory receives from the worker. */
export interface ActivityDependencies {
  config: Config;
  db: Knex;
  email: EmailSender;
  /** Key that derives the tokens of emailed links; see deriveLinkToken. */
  tokenKey: Buffer;
  /** For activities that start or signal other workflows. */
  temporal: Client;
}
