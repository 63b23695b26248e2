import { TIMED_OUT, withTimeout } from '../scripts/timeouts.js';

interface CleanupStep {
  name: string;
  timeoutMs: number;
  run: () => Promise<unknown>;
}

/**
 * Stops what the benchmark started, newest first, so the API closes before the worker and the worker
 * before Temporal and Postgres. Each step gets a time limit. A step that fails or times out is reported
 * on stderr, and the next one still runs.
 */
export class Cleanup {
  private readonly steps: CleanupStep[] = [];
  private readonly lastSteps: CleanupStep[] = [];

  add(name: string, timeoutMs: number, run: () => Promise<unknown>): void {
    this.steps.push({ name, timeoutMs, run });
  }

  /**
   * Adds a step that `runLast` runs after all the others. The caller should end the process right after
   * it, because a Temporal client that is closed while an aborted request still retries a call throws
   * from a timer ("Channel has been shut down").
   */
  addLast(name: string, timeoutMs: number, run: () => Promise<unknown>): void {
    this.lastSteps.push({ name, timeoutMs, run });
  }

  /** Runs the steps added with `add` and returns the number that failed or timed out. */
  runAll(): Promise<number> {
    return runSteps(this.steps.splice(0).reverse());
  }

  runLast(): Promise<number> {
    return runSteps(this.lastSteps.splice(0).reverse());
  }
}

async function runSteps(steps: CleanupStep[]): Promise<number> {
  let failures = 0;
  for (const step of steps) {
    try {
      const result = await withTimeout(Promise.resolve().then(step.run), step.timeoutMs);
      if (result === TIMED_OUT) {
        failures += 1;
        process.stderr.write(`cleanup: ${step.name} timed out after ${step.timeoutMs / 1000} s, continuing with the next step\n`);
      }
    } catch (error) {
      failures += 1;
      process.stderr.write(`cleanup: ${step.name} failed: ${(error as Error).message}\n`);
    }
  }
  return failures;
}
