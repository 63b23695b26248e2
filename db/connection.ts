import knexFactory, { type Knex } from 'knex';
import { Model } from 'objection';
import pg from 'pg';

import { migrationSource } from './migrations/index.js';

// Return bigint columns (audit event ids, counts) as strings rather than lossy numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => value);

export function createDatabase(options: { url: string; poolMax?: number }): Knex {
  const knex = knexFactory({
    client: 'pg',
    connection: options.url,
    pool: { min: 0, max: options.poolMax ?? 10 },
  });
  Model.knex(knex);
  return knex;
}

export async function migrateToLatest(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest({ migrationSource })) as [number, string[]];
  return applied;
}

export async function rollbackAll(knex: Knex): Promise<void> {
  await knex.migrate.rollback({ migrationSource }, true);
}

export type { Knex };
