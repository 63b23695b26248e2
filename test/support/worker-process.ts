import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER_MAIN = fileURLToPath(new URL('../../worker/main.ts', import.meta.url));

/**
 * The production worker entry point in a child process, so a test can kill it as a crash would. The
 * benchmark also runs its baseline worker this way, by passing another entry point that logs "worker started".
 */
export class WorkerProcess {
  private child?: ChildProcess;
  readonly output: string[] = [];

  constructor(
    private readonly env: Record<string, string>,
    private readonly entryPoint: string = WORKER_MAIN,
  ) {}

  /** The child's process id, once started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the worker and resolves once it logs that it is polling, within 60 s. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', this.entryPoint], {
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
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}
