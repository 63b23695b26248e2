import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { stopChild } from './stop-child.js';

const WORKER_MAIN = fileURLToPath(new URL('../../worker/main.ts', import.meta.url));

/** The production worker entry point in a child process, so a test can kill it as a crash would. */
export class WorkerProcess {
  private child?: ChildProcess;
  readonly output: string[] = [];

  constructor(private readonly env: Record<string, string>) {}

  /** Starts the worker and resolves once it logs that it is polling, within 60 s. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER_MAIN], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker did not start within 60 s:\n${this.output.join('')}`)), 60_000);
      const onData = (chunk: Buffer) => {
        this.output.push(chunk.toString('utf8'));
        if (chunk.toString('utf8').includes('"worker started"')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (chunk: Buffer) => this.output.push(chunk.toString('utf8')));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`worker exited with code ${code} before starting:\n${this.output.join('')}`));
      });
    });
  }

  /** Ends the process with SIGKILL: no graceful shutdown, activities in flight are lost. */
  async kill(): Promise<void> {
    await this.stop('SIGKILL');
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopChild(this.child, signal);
  }
}
