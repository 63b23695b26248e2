import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

import knexFactory from 'knex';

// Jest loads global setup through its CommonJS require hook, which does not map the project's `.js`
// import specifiers to TypeScript files; so this file imports nothing of the project's, and the test
// files run the migrations.

/** Server on which each run creates its test database: the machine's Postgres, or TEST_DATABASE_URL when set. */
const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * The flags of `searchAttributeFlags()` in workflows/search-attributes.ts, written out because this file imports
 * nothing of the project's. test/search-attributes.test.ts fails when the two lists differ.
 */
export const SEARCH_ATTRIBUTE_FLAGS = [
  '--search-attribute',
  'LifecycleAccountId=Keyword',
  '--search-attribute',
  'LifecycleEnvironment=Keyword',
  '--search-attribute',
  'LifecycleKind=Keyword',
  '--search-attribute',
  'LifecycleMemberStatus=Keyword',
];

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `temporal operator cluster health` until the server responds, for at most 60 s. */
export async function waitForTemporal(cli: string, address: string, child: ReturnType<typeof spawn>): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`the Temporal dev server exited with code ${child.exitCode}`);
    }
    try {
      execFileSync(cli, ['operator', 'cluster', 'health', '--address', address], { stdio: 'ignore', timeout: 5_000 });
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`the Temporal dev server at ${address} did not answer within 60 s: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/** Finds the Temporal CLI: TEMPORAL_CLI_PATH, `temporal` on PATH, or the cache that .ci/run fills. */
function locateTemporalCli(): string {
  let onPath: string | undefined;
  try {
    onPath = execFileSync('sh', ['-c', 'command -v temporal'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    onPath = undefined;
  }
  const candidates = [
    process.env.TEMPORAL_CLI_PATH,
    onPath,
    join(homedir(), '.cache', 'lifecycle', 'bin', 'temporal'),
    join(homedir(), 'go', 'bin', 'temporal'),
  ];
  const found = candidates.find((path): path is string => Boolean(path) && existsSync(path!));
  if (!found) {
    throw new Error('No Temporal CLI found. Set TEMPORAL_CLI_PATH, or run .ci/run once, which builds it.');
  }
  return found;
}

/**
 * Starts one Temporal dev server and creates one fresh database for the whole run. Test files read
 * both from the environment; the database is dropped at the end of the run.
 */
export default async function globalSetup(): Promise<void> {
  const databaseName = `lifecycle_test_${process.pid}_${Date.now()}`;
  const admin = knexFactory({ client: 'pg', connection: ADMIN_URL, pool: { min: 0, max: 1 } });
  await admin.raw('CREATE DATABASE ??', [databaseName]);
  await admin.destroy();
  const databaseUrl = new URL(ADMIN_URL);
  databaseUrl.pathname = `/${databaseName}`;

  const port = await freePort();
  const cli = locateTemporalCli();
  const child = spawn(
    cli,
    ['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'error', '--namespace', 'default', ...SEARCH_ATTRIBUTE_FLAGS],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const address = `127.0.0.1:${port}`;
  await waitForTemporal(cli, address, child);

  process.env.LIFECYCLE_TEST_DATABASE_URL = databaseUrl.toString();
  process.env.LIFECYCLE_TEST_DATABASE_NAME = databaseName;
  process.env.LIFECYCLE_TEST_TEMPORAL_ADDRESS = address;
  process.env.LIFECYCLE_TEST_TEMPORAL_CLI = cli;
  (globalThis as { __temporalServer?: typeof child }).__temporalServer = child;
}
