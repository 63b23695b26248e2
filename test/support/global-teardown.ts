import type { ChildProcess } from 'node:child_process';

import knexFactory from 'knex';

const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export default async function globalTeardown(): Promise<void> {
  const server = (globalThis as { __temporalServer?: ChildProcess }).__temporalServer;
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (server.exitCode === null) {
      server.kill('SIGKILL');
    }
  }

  const databaseName = process.env.LIFECYCLE_TEST_DATABASE_NAME;
  if (databaseName && !process.env.KEEP_TEST_DATABASE) {
    const admin = knexFactory({ client: 'pg', connection: ADMIN_URL, pool: { min: 0, max: 1 } });
    await admin.raw('DROP DATABASE IF EXISTS ?? WITH (FORCE)', [databaseName]);
    await admin.destroy();
  }
}
