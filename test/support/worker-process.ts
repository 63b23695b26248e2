import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { stopChild } from './stop-child.js';

const WORKER_MAIN = fileURLToPath(new URL('../../worker/main.ts', import.meta.url));
const API_MAIN = fileURLToPath(new URL('../../api/main.ts', import.meta.url));

/** A production entry point in a child process, so a test can stop it with a signal as an orchestrator would. */
export class ServiceProcess {
  private child?: ChildProcess;
  readonly output: string[] = [];

  constructor(
    private readonly entryPoint: string,
    private readonly readyMessage: string,
    private readonly env: Record<string, string>,
    /** Options for node itself, such as --cpu-prof, which NODE_OPTIONS does not accept. */
    private readonly nodeOptions: string[] = [],
  ) {}

  /** The child's process id, once started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process and resolves once it logs its ready message, within 60 s. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [...this.nodeOptions, '--import', 'tsx', this.entryPoint], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.entryPoint} did not start within 60 s:\n${this.output.join('')}`)), 60_000);
      const onData = (chunk: Buffer) => {
        this.output.push(chunk.toString('utf8'));
        if (chunk.toString('utf8').includes(`"${this.readyMessage}"`)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (chunk: Buffer) => this.output.push(chunk.toString('utf8')));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.entryPoint} exited with code ${code} before starting:\n${this.output.join('')}`));
      });
    });
  }

  /** Ends the process with SIGKILL: no graceful shutdown, activities in flight are lost. */
  async kill(): Promise<void> {
    await this.stop('SIGKILL');
  }

  /** Sends `signal` without waiting; `exited` then resolves with the exit code. */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /** Resolves with the exit code once the process has ended (null after a signal it did not handle). */
  exited(): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return Promise.resolve(child?.exitCode ?? null);
    }
    return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Sends `signal` and waits up to 15 s for the exit, then kills the process. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopChild(this.child, signal);
  }
}

/**
 * The production worker entry point in a child process. The benchmark also runs its baseline worker this
 * way, by passing another entry point that logs "worker started".
 */
export class WorkerProcess extends ServiceProcess {
  constructor(env: Record<string, string>, entryPoint: string = WORKER_MAIN, nodeOptions: string[] = []) {
    super(entryPoint, 'worker started', env, nodeOptions);
  }
}

/** The production API entry point in a child process; set PORT in `env`. */
export class ApiProcess extends ServiceProcess {
  constructor(env: Record<string, string>) {
    super(API_MAIN, 'API listening', env);
  }
}
