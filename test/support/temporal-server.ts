import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort, SEARCH_ATTRIBUTE_FLAGS, waitForTemporal } from './global-setup.js';
import { stopChild } from './stop-child.js';

/**
 * A Temporal dev server of the test's own, on loopback, whose state lives in a SQLite file
 * (`--db-filename`), so that a test can stop it and start it again with every workflow and timer kept.
 * The run's shared dev server from the global setup is never touched.
 */
export class TemporalServer {
  private child?: ChildProcess;
  private directory?: string;
  private port = 0;
  private httpPort = 0;

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the server, on the same ports and file as before when it ran already, and waits until it responds. */
  async start(): Promise<void> {
    if (!this.directory) {
      this.directory = await mkdtemp(join(tmpdir(), 'lifecycle-temporal-'));
      this.port = await freePort();
      this.httpPort = await freePort();
    }
    const cli = process.env.LIFECYCLE_TEST_TEMPORAL_CLI!;
    const child = spawn(
      cli,
      [
        'server',
        'start-dev',
        '--headless',
        '--ip',
        '127.0.0.1',
        '--port',
        String(this.port),
        '--http-port',
        String(this.httpPort),
        '--db-filename',
        join(this.directory, 'temporal.sqlite'),
        '--log-level',
        'error',
        ...SEARCH_ATTRIBUTE_FLAGS,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    this.child = child;
    await waitForTemporal(cli, this.address, child);
  }

  /** Stops the server with SIGTERM, or SIGKILL after 10 s; the SQLite file stays for the next start. */
  async stop(): Promise<void> {
    await stopChild(this.child, 'SIGTERM', 10_000);
  }

  /** Stops the server and deletes its file. */
  async destroy(): Promise<void> {
    await this.stop();
    if (this.directory) {
      await rm(this.directory, { recursive: true, force: true });
    }
  }
}
