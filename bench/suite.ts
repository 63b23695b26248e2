import { performance } from 'node:perf_hooks';

import { readWorkerMemory, runBulk } from './bulk.js';
import { Cleanup } from './cleanup.js';
import { DeliveryClock } from './deliveries.js';
import type { BenchContext } from './invites.js';
import { runListing } from './listing.js';
import { parseBenchOptions, USAGE, UsageError, type BenchOptions } from './options.js';
import {
  countFailures,
  describeMachine,
  maxOtherCpuPercent,
  readResultsPage,
  renderResults,
  resultLines,
  writeResultsPage,
  type BenchResults,
} from './report.js';
import { sampleMachineCpu } from './resources.js';
import { runSignIn, SIGN_IN_EMAILS } from './sign-in.js';
import { runSso } from './sso.js';
import { createWorkDir, removeWorkDir, startStack } from './stack.js';
import { runThroughput } from './throughput.js';

/**
 * `npm run bench`: the benchmark suite. It starts the whole service on loopback, runs bulk onboarding
 * with the worker's memory, invitation throughput against a bare Temporal baseline, sign-in and member
 * lists, prints one JSON line per benchmark and writes the tables into BENCHMARKS.md.
 */

/** How long the machine's CPU use is sampled before the run, and the CPU use of other processes above which a warning is printed. */
const IDLE_SAMPLE_MS = 3_000;
const BUSY_MACHINE_PERCENT = 20;

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

async function measure(context: BenchContext, options: BenchOptions, cleanup: Cleanup, cpuPercentBeforeRun: number | undefined): Promise<BenchResults> {
  const { stack, signal } = context;
  const startedAt = new Date();
  const clockStart = performance.now();

  // Bulk onboarding runs first, so that its invitations are the only open ones when the worker's memory is read.
  const idleMemory = await readWorkerMemory(context);
  const bulk = await runBulk(context, { count: options.bulkInvitations, idleMemory, progress });
  signal.throwIfAborted();

  const throughput = await runThroughput(context, { durationMs: options.throughputMs, concurrency: options.concurrency, progress });
  signal.throwIfAborted();

  progress(`sign-in: ${options.signInRequests} sign-ins, then ${options.signInBursts} bursts of 20`);
  const signIn = await runSignIn(context, { requests: options.signInRequests, bursts: options.signInBursts });
  signal.throwIfAborted();
  progress(`SSO sign-in: ${options.signInRequests} callbacks from a local OpenID provider`);
  const sso = await runSso(context, { emails: SIGN_IN_EMAILS, requests: options.signInRequests, cleanup });
  signal.throwIfAborted();

  const listing = await runListing(context, { tiers: options.listTiers, requests: options.listRequests, progress });
  signal.throwIfAborted();

  const {
    adminDatabaseUrl: _adminDatabaseUrl,
    temporalAddress: _temporalAddress,
    resultsPage: _resultsPage,
    workerProfileDir: _workerProfileDir,
    ...settings
  } = options;
  return {
    startedAt: startedAt.toISOString(),
    durationSeconds: (performance.now() - clockStart) / 1000,
    machine: describeMachine(stack, cpuPercentBeforeRun),
    options: settings,
    bulk,
    throughput,
    signIn,
    sso,
    listing,
  };
}

async function main(): Promise<number> {
  let options: BenchOptions | undefined;
  try {
    options = parseBenchOptions(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n\n${USAGE}`);
      return 64;
    }
    throw error;
  }
  if (!options) {
    process.stdout.write(USAGE);
    return 0;
  }

  if (options.resultsPage) {
    try {
      await readResultsPage(options.resultsPage);
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n`);
      return 1;
    }
  }

  const controller = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (controller.signal.aborted) {
        progress(`${signal} received; already stopping, which takes at most about two minutes`);
        return;
      }
      progress(`${signal} received; stopping`);
      controller.abort(new Error(`Interrupted by ${signal}.`));
    });
  }

  // Other work on the machine distorts every figure, so its load is recorded with the results.
  const before = await sampleMachineCpu(IDLE_SAMPLE_MS);
  if (before && before.percent > BUSY_MACHINE_PERCENT) {
    progress(`The machine is busy: ${before.percent.toFixed(0)} % of one CPU before the run. The figures will show it.`);
  }

  const cleanup = new Cleanup();
  const workDir = await createWorkDir();
  let exitCode = 1;
  try {
    const stack = await startStack({
      adminDatabaseUrl: options.adminDatabaseUrl,
      temporalAddress: options.temporalAddress,
      workDir,
      cleanup,
      onFatal: (error) => controller.abort(error),
      progress,
      workerProfileDir: options.workerProfileDir,
    });
    controller.signal.throwIfAborted();

    const context = { stack, deliveries: new DeliveryClock(stack.sendgrid), signal: controller.signal };
    const results = await measure(context, options, cleanup, before?.percent);
    const markdown = renderResults(results);
    process.stdout.write(`${resultLines(results).join('\n')}\n`);
    progress(`results:\n${markdown}`);
    if (options.resultsPage) {
      await writeResultsPage(options.resultsPage, markdown);
      progress(`wrote the results into ${options.resultsPage}`);
    }

    const failures = countFailures(results);
    if (failures > 0) {
      progress(`${failures} requests failed, or invitations or emails were lost or duplicated; the tables count them. Do not quote these figures.`);
    }
    const otherCpu = maxOtherCpuPercent(results);
    if (otherCpu !== undefined && otherCpu > BUSY_MACHINE_PERCENT) {
      progress(
        `Processes outside the benchmark used up to ${otherCpu.toFixed(0)} % of one CPU during a run ` +
          '(column "other processes"); the figures are distorted by that load.',
      );
    }
    exitCode = failures > 0 ? 1 : 0;
  } catch (error) {
    if (controller.signal.aborted) {
      progress(`The benchmark stopped early: ${(controller.signal.reason as Error).message}`);
    } else {
      progress(`The benchmark failed: ${(error as Error).stack ?? String(error)}`);
    }
  } finally {
    progress('stopping the API, the worker and the servers, and dropping the database');
    const cleanupFailures = await cleanup.runAll();
    if (exitCode === 0 && cleanupFailures === 0) {
      await removeWorkDir(workDir);
    } else {
      progress(`The API, worker and Temporal server logs are kept in ${workDir}`);
    }
    await cleanup.runLast();
  }
  return exitCode;
}

// Ends the process at once: after an interruption, a request the API was still serving may have a
// Temporal client retry pending, which would throw once the client is closed.
process.exit(await main());
