import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { Connection } from '@temporalio/client';

import { LIFECYCLE_SEARCH_ATTRIBUTES, searchAttributeFlags } from '../workflows/search-attributes.js';
import { TIMED_OUT, withTimeout } from './timeouts.js';

/** A Temporal development server started by this process. */
export interface TemporalDevServer {
  /** The gRPC address clients and workers connect to, host:port. */
  address: string;
  /** The Web UI, for a browser on this machine. */
  uiUrl: string;
  /** A file that receives the server's output, when the server writes to one. */
  logFile: string | undefined;
  stop(): Promise<void>;
}

export interface DevServerOptions {
  /** Loopback address the server binds to; the Web UI binds to the same one. */
  ip: string;
  port: number;
  uiPort: number;
  /** SQLite file that keeps workflows across restarts. */
  dbFilename: string;
  namespace: string;
  /** How long to wait for the server to respond, in milliseconds. */
  readyTimeoutMs: number;
  /** Dynamic configuration values of the server, such as `system.enableActivityEagerExecution: 'true'`. */
  dynamicConfig?: Record<string, string>;
}

const STOP_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 500;

/** Resolves true when something accepts TCP connections on host:port within a short wait. */
function isPortAnswering(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (answering: boolean) => {
      socket.destroy();
      resolve(answering);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

async function assertPortsFree(options: DevServerOptions): Promise<void> {
  for (const [port, what] of [
    [options.port, 'gRPC'],
    [options.uiPort, 'Web UI'],
  ] as const) {
    if (await isPortAnswering(options.ip, port)) {
      throw new Error(
        `Port ${port} (Temporal ${what}) on ${options.ip} is already in use, so a new Temporal dev server cannot start. ` +
          'Stop the process that holds it, or set TEMPORAL_ADDRESS to use a Temporal Service that is already running.',
      );
    }
  }
}

/** Polls until the namespace can be described, which means the frontend responds and the namespace exists. */
async function waitUntilReady(address: string, options: DevServerOptions, hasExited: () => string | undefined): Promise<void> {
  const deadline = Date.now() + options.readyTimeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const exit = hasExited();
    if (exit) {
      throw new Error(`The Temporal dev server exited during start-up (${exit}).`);
    }
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await connection.withDeadline(Date.now() + 2_000, () =>
          connection.workflowService.describeNamespace({ namespace: options.namespace }),
        );
        return;
      } finally {
        await connection.close();
      }
    } catch (error) {
      lastError = error;
    }
    await sleep(POLL_INTERVAL_MS);
  }
  throw new Error(
    `The Temporal dev server did not respond on ${address} within ${options.readyTimeoutMs / 1000} s: ${(lastError as Error)?.message}`,
  );
}

function lastLines(file: string, count: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '(no output)';
  }
}

function describeExit(child: ChildProcess): string | undefined {
  if (child.exitCode !== null) {
    return `exit code ${child.exitCode}`;
  }
  return child.signalCode ? `signal ${child.signalCode}` : undefined;
}

/**
 * Starts `temporal server start-dev` from the given CLI and waits until it responds. The server runs in
 * its own process group, so that a Ctrl-C in the terminal reaches only the dev command, which stops the
 * worker first and the server last. The server is also sent SIGTERM when this process exits for any
 * other reason; only a SIGKILL of this process leaves it running.
 */
export async function startCliDevServer(
  cliPath: string,
  options: DevServerOptions & { logFile: string; onUnexpectedExit?: (reason: string) => void },
): Promise<TemporalDevServer> {
  await assertPortsFree(options);

  const output = openSync(options.logFile, 'a');
  const args = [
    'server',
    'start-dev',
    '--ip',
    options.ip,
    '--port',
    String(options.port),
    '--ui-port',
    String(options.uiPort),
    '--db-filename',
    options.dbFilename,
    '--log-level',
    'warn',
    ...searchAttributeFlags(),
    ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${value}`]),
  ];
  // The server always creates "default"; any other namespace is created at launch.
  if (options.namespace !== 'default') {
    args.push('--namespace', options.namespace);
  }
  const child = spawn(cliPath, args, { detached: true, stdio: ['ignore', output, output] });
  closeSync(output);

  let stopping = false;
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
    }
  };
  process.on('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => {
    process.off('exit', killOnExit);
    if (!stopping) {
      options.onUnexpectedExit?.(`${describeExit(child)}; last output:\n${lastLines(options.logFile, 20)}`);
    }
  });
  const spawnFailed = new Promise<never>((_resolve, reject) => child.once('error', reject));

  const address = `${options.ip}:${options.port}`;
  const stop = async () => {
    stopping = true;
    // No pid means the spawn itself failed, and then no exit event comes.
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    child.kill('SIGTERM');
    if ((await withTimeout(exited, STOP_TIMEOUT_MS)) === TIMED_OUT) {
      child.kill('SIGKILL');
      await withTimeout(exited, STOP_TIMEOUT_MS);
    }
  };

  try {
    await Promise.race([waitUntilReady(address, options, () => describeExit(child)), spawnFailed]);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\nLast lines of ${options.logFile}:\n${lastLines(options.logFile, 20)}`);
  }

  return { address, uiUrl: `http://localhost:${options.uiPort}`, logFile: options.logFile, stop };
}

/**
 * Starts the dev server through the SDK's test environment, which downloads a CLI release into
 * `downloadDir` on first use. The dev command falls back to it when no CLI is found and Go is missing.
 * `@temporalio/testing` is loaded only here, because it is a development dependency.
 */
export async function startDownloadedDevServer(options: DevServerOptions & { downloadDir: string }): Promise<TemporalDevServer> {
  await assertPortsFree(options);

  const { TestWorkflowEnvironment } = await import('@temporalio/testing');
  const environment = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'cached-download', downloadDir: options.downloadDir },
      ip: options.ip,
      port: options.port,
      ui: true,
      uiPort: options.uiPort,
      dbFilename: options.dbFilename,
      namespace: options.namespace,
      searchAttributes: [...LIFECYCLE_SEARCH_ATTRIBUTES],
    },
  });
  const address = `${options.ip}:${options.port}`;
  try {
    await waitUntilReady(address, options, () => undefined);
  } catch (error) {
    await environment.teardown();
    throw error;
  }

  return {
    address,
    uiUrl: `http://localhost:${options.uiPort}`,
    logFile: undefined,
    stop: () => environment.teardown(),
  };
}
