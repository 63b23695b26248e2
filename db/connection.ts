import knexFactory, { type Knex } from 'knex';
import { Model } from 'objection';
import pg from 'pg';

import { migrationSource } from './migrations/index.js';

// Return bigint columns (audit event ids, counts) as strings rather than lossy numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => value);

/**
 * How long a new connection may take to open, and a query may wait for a pooled connection. Without
 * these, a request against an unreachable database waits for knex's default of 60 s before it fails.
 */
const CONNECT_TIMEOUT_MS = 5_000;
const ACQUIRE_TIMEOUT_MS = 10_000;

export function createDatabase(options: { url: string; poolMax?: number }): Knex {
  const knex = knexFactory({
    client: 'pg',
    connection: { connectionString: options.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS },
    pool: { min: 0, max: options.poolMax ?? 10 },
    acquireConnectionTimeout: ACQUIRE_TIMEOUT_MS,
  });
  Model.knex(knex);
  return knex;
}

/**
 * Error codes that mean the database could not be reached or dropped the connection, rather than that
 * a statement failed. They are Node socket errors, SQLSTATE class 08 (connection exception), and 57P01
 * to 57P03 (the server is shutting down, crashed, or is still starting).
 */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '57P01',
  '57P02',
  '57P03',
]);

/** Messages of pg and knex failures that carry no code but mean the same. */
const UNAVAILABLE_MESSAGE =
  /^(Connection terminated|Client has encountered a connection error|Knex: Timeout acquiring a connection|timeout exceeded when trying to connect)/;

/**
 * Tells whether an error means that Postgres is unreachable for now, so that the caller may retry
 * later, as opposed to a failed statement. Follows `cause` and the errors of an AggregateError, which
 * Node uses when every address of a host refused the connection.
 */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (error === null || typeof error !== 'object' || depth > 3) {
    return false;
  }
  const { code, message, name, cause } = error as { code?: unknown; message?: unknown; name?: unknown; cause?: unknown };
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) {
    return true;
  }
  if (name === 'KnexTimeoutError' || (typeof message === 'string' && UNAVAILABLE_MESSAGE.test(message))) {
    return true;
  }
  if (error instanceof AggregateError && error.errors.some((inner) => isDatabaseUnavailable(inner, depth + 1))) {
    return true;
  }
  return isDatabaseUnavailable(cause, depth + 1);
}

export async function migrateToLatest(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest({ migrationSource })) as [number, string[]];
  return applied;
}

export async function rollbackAll(knex: Knex): Promise<void> {
  await knex.migrate.rollback({ migrationSource }, true);
}

export type { Knex };
