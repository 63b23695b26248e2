import { performance } from 'node:perf_hooks';

import { runAccepts } from './accepts.js';
import { Cleanup } from './cleanup.js';
import { DeliveryClock } from './deliveries.js';
import { runInvites, type BenchContext } from './invites.js';
import { runListing } from './listing.js';
import { parseBenchOptions, USAGE, UsageError, type BenchOptions } from './options.js';
import { countFailures, describeMachine, maxOtherCpuPercent, renderTables, resultsJson, type BenchResults } from './report.js';
import { sampleMachineCpu } from './resources.js';
import { createWorkDir, removeWorkDir, startStack } from './stack.js';
import { inviteTimeline } from './timeline.js';

/**
 * `npm run bench`: measures invites, accepts and member lists over HTTP against the whole service,
 * started in this process on loopback. BENCHMARKS.md describes the method and carries the figures.
 */

/** Unmeasured invites first, so that the first measured one does not pay for cold caches and connections. */
const WARMUP_INVITES = 10;
/** Unmeasured accepts first. Their invitations come from the warm-up invites. */
const WARMUP_ACCEPTS = 3;
/** How long the machine's CPU use is sampled before the run, and the CPU use of other processes above which a warning is printed. */
const IDLE_SAMPLE_MS = 3_000;
const BUSY_MACHINE_PERCENT = 20;

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

async function measure(context: BenchContext, options: BenchOptions, cpuPercentBeforeRun: number | undefined): Promise<BenchResults> {
  const { stack, signal } = context;
  const startedAt = new Date();
  const clockStart = performance.now();

  progress(`warm-up: ${WARMUP_INVITES} invites`);
  const warmup = await runInvites(context, { label: 'warmup', count: WARMUP_INVITES, concurrency: 1 });
  signal.throwIfAborted();
  if (warmup.succeeded < WARMUP_ACCEPTS) {
    throw new Error(`The warm-up invites failed: ${JSON.stringify(warmup.errors)}`);
  }

  progress(`1. ${options.sequentialInvites} sequential invites`);
  const sequential = await runInvites(context, { label: 'sequential', count: options.sequentialInvites, concurrency: 1 });
  signal.throwIfAborted();
  progress(`   reading ${sequential.invites.length} workflow histories`);
  const timeline = await inviteTimeline(stack.temporal, sequential.invites, signal);
  signal.throwIfAborted();

  const throughput = [];
  for (const concurrency of options.concurrencies) {
    progress(`2. ${options.throughputInvites} invites at concurrency ${concurrency}`);
    throughput.push(await runInvites(context, { label: `concurrency-${concurrency}`, count: options.throughputInvites, concurrency }));
    signal.throwIfAborted();
  }

  progress(`3. ${options.accepts} sequential accepts`);
  const accepts = await runAccepts(context, {
    warmup: warmup.invites.slice(0, WARMUP_ACCEPTS),
    measured: sequential.invites.slice(0, options.accepts),
  });
  signal.throwIfAborted();

  progress(`4. member lists with ${options.listMembers} members, ${options.listRequests} requests each`);
  const listing = await runListing(context, { members: options.listMembers, requests: options.listRequests });
  signal.throwIfAborted();

  const { adminDatabaseUrl: _adminDatabaseUrl, temporalAddress: _temporalAddress, ...counts } = options;
  return {
    startedAt: startedAt.toISOString(),
    durationSeconds: (performance.now() - clockStart) / 1000,
    machine: describeMachine(stack, cpuPercentBeforeRun),
    options: counts,
    sequential,
    timeline,
    throughput,
    accepts,
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
    });
    controller.signal.throwIfAborted();

    const context = { stack, deliveries: new DeliveryClock(stack.sendgrid), signal: controller.signal };
    const results = await measure(context, options, before?.percent);
    process.stdout.write(`${renderTables(results)}\nResults as JSON:\n${resultsJson(results)}\n`);

    const failures = countFailures(results);
    if (failures > 0) {
      progress(`${failures} requests failed or emails did not arrive; the tables count them per row. Do not quote these figures.`);
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
