import type { Knex } from 'knex';

import { eventually } from './harness.js';

/** A lock held by the test in an open transaction; `release()` commits it. */
export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Locks `table` in EXCLUSIVE mode, which lets plain reads through but blocks every insert, update and
 * delete. An activity that writes to the table then waits inside its own open transaction, which gives
 * a test a fixed point to inject a fault during a database write.
 */
export async function lockTable(db: Knex, table: string): Promise<HeldLock> {
  const trx = await db.transaction();
  await trx.raw('LOCK TABLE ?? IN EXCLUSIVE MODE', [table]);
  return heldBy(trx);
}

/**
 * Locks one row with SELECT ... FOR UPDATE, so that two racing requests both wait on it. Waiters queue
 * on Postgres's tuple lock, so in practice the first to queue gets the row next. A test that relies on
 * that order checks each order's outcome, so a different order fails it rather than passing unnoticed.
 */
export async function lockRow(db: Knex, table: string, id: string): Promise<HeldLock> {
  const trx = await db.transaction();
  await trx(table).where({ id }).forUpdate().first('id');
  return heldBy(trx);
}

function heldBy(trx: Knex.Transaction): HeldLock {
  return {
    release: async () => {
      await trx.commit();
    },
  };
}

/**
 * Waits until a session of this database blocks on a lock while running a statement that contains
 * `statement` (for example `insert into "audit_events"`), and returns that session's process id.
 */
export async function waitForBlockedStatement(db: Knex, statement: string, timeoutMs = 30_000): Promise<number> {
  return eventually(
    async () => {
      const { rows } = await db.raw(
        `SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND position(? in query) > 0`,
        [statement],
      );
      return rows[0]?.pid as number | undefined;
    },
    timeoutMs,
    `a statement containing ${statement} to wait for a lock`,
  );
}

/** Waits until the Postgres session `pid` has ended, for example after its client was killed and a lock it waited on was released. */
export async function waitForSessionEnd(db: Knex, pid: number, timeoutMs = 30_000): Promise<void> {
  await eventually(
    async () => {
      const { rows } = await db.raw('SELECT 1 FROM pg_stat_activity WHERE pid = ?', [pid]);
      return rows.length === 0 ? true : undefined;
    },
    timeoutMs,
    `Postgres session ${pid} to end`,
  );
}
