import { performance } from 'node:perf_hooks';

import { ErrorTally } from './http.js';
import { noopActivityWorkflow } from './baseline/workflows.js';
import { runInvites, type BenchContext, type InviteRunResult } from './invites.js';
import { measureResources, type ResourceUse } from './resources.js';
import { BASELINE_TASK_QUEUE } from './stack.js';
import { summarize, type Summary } from './stats.js';
import { inviteTimeline, type InviteTimeline } from './timeline.js';

/** Unmeasured operations on each side first, so that neither pays for cold caches and connections. */
const WARMUP_OPERATIONS = 10;
/** Workflow histories read back to split the invite's time into parts. Each read is one request to Temporal. */
const TIMELINE_SAMPLE = 200;

/** The baseline: `client.workflow.start` of a workflow that runs one no-op activity, then waiting for its result. */
export interface BaselineRunResult {
  concurrency: number;
  started: number;
  completed: number;
  errors: ErrorTally;
  /** From the first start call to the last workflow result, in milliseconds. */
  wallMs: number;
  /** Completed workflows divided by the wall time. */
  workflowsPerSecond: number;
  /** Time until `start` returned, in milliseconds. */
  startLatency: Summary | undefined;
  /** Time from calling `start` to having the workflow's result, in milliseconds. */
  startToCompletion: Summary | undefined;
  resources: ResourceUse;
}

export interface ThroughputResult {
  durationMs: number;
  concurrency: number;
  invitations: InviteRunResult;
  baseline: BaselineRunResult;
  /** The product's end-to-end rate divided by the baseline's rate. */
  ratio: number;
  /** The first invites of the measured run, split into parts from their workflow histories. */
  timeline: InviteTimeline;
}

async function runBaseline(context: BenchContext, run: { label: string; concurrency: number } & ({ count: number } | { durationMs: number })): Promise<BaselineRunResult> {
  const { stack, signal } = context;
  const errors = new ErrorTally();
  const startLatencies: number[] = [];
  const totalLatencies: number[] = [];
  let next = 0;
  let deadline = Number.POSITIVE_INFINITY;
  let lastCompletion = 0;
  const hasMore = () => ('count' in run ? next < run.count : performance.now() < deadline);

  const loop = async () => {
    while (hasMore() && !signal.aborted) {
      const workflowId = `baseline-${run.label}-${next}`;
      next += 1;
      const startedAt = performance.now();
      try {
        const handle = await stack.temporal.workflow.start(noopActivityWorkflow, { workflowId, taskQueue: BASELINE_TASK_QUEUE });
        startLatencies.push(performance.now() - startedAt);
        await handle.result();
        lastCompletion = performance.now();
        totalLatencies.push(lastCompletion - startedAt);
      } catch (error) {
        if (signal.aborted) {
          return;
        }
        errors.add(`failed: ${(error as Error).name}`, (error as Error).message);
      }
    }
  };

  const stopMeasuring = await measureResources(stack.cpuSources);
  const startedAt = performance.now();
  if ('durationMs' in run) {
    deadline = startedAt + run.durationMs;
  }
  await Promise.all(Array.from({ length: run.concurrency }, loop));
  const resources = await stopMeasuring();
  const wallMs = (lastCompletion || performance.now()) - startedAt;

  return {
    concurrency: run.concurrency,
    started: startLatencies.length,
    completed: totalLatencies.length,
    errors,
    wallMs,
    workflowsPerSecond: totalLatencies.length / (wallMs / 1000),
    startLatency: summarize(startLatencies),
    startToCompletion: summarize(totalLatencies),
    resources,
  };
}

/**
 * Sends invites from `concurrency` loops for `durationMs`, then runs the baseline with the same
 * concurrency for the same time against the same Temporal server.
 */
export async function runThroughput(
  context: BenchContext,
  input: { durationMs: number; concurrency: number; progress: (message: string) => void },
): Promise<ThroughputResult> {
  const { concurrency, durationMs, progress } = input;

  progress(`invitation throughput: warm-up, then ${durationMs / 1000} s of invites from ${concurrency} loops`);
  await runInvites(context, { label: 'warmup', count: WARMUP_OPERATIONS, concurrency: 1 });
  const invitations = await runInvites(context, { label: 'sustained', durationMs, concurrency });
  context.signal.throwIfAborted();

  progress(`invitation throughput baseline: warm-up, then ${durationMs / 1000} s of no-op workflows from ${concurrency} loops`);
  await runBaseline(context, { label: 'warmup', count: WARMUP_OPERATIONS, concurrency: 1 });
  const baseline = await runBaseline(context, { label: 'sustained', durationMs, concurrency });
  context.signal.throwIfAborted();

  progress(`reading ${Math.min(TIMELINE_SAMPLE, invitations.invites.length)} invitation workflow histories`);
  const timeline = await inviteTimeline(context.stack.temporal, invitations.invites.slice(0, TIMELINE_SAMPLE), context.signal);

  return {
    durationMs,
    concurrency,
    invitations,
    baseline,
    ratio: baseline.workflowsPerSecond === 0 ? 0 : invitations.invitationsToEmailPerSecond / baseline.workflowsPerSecond,
    timeline,
  };
}
