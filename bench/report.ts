import { availableParallelism, cpus, release, totalmem } from 'node:os';

import type { AcceptRunResult } from './accepts.js';
import type { InviteRunResult } from './invites.js';
import type { ListRunResult, ListVariantResult } from './listing.js';
import type { BenchOptions } from './options.js';
import type { ResourceUse } from './resources.js';
import type { BenchStack } from './stack.js';
import { formatMs, markdownTable, type Summary } from './stats.js';
import { TIMELINE_SEGMENTS, type InviteTimeline, type TimelineSegment } from './timeline.js';

export interface BenchResults {
  startedAt: string;
  durationSeconds: number;
  machine: {
    cpuModel: string;
    cpus: number;
    memoryGiB: number;
    kernel: string;
    node: string;
    postgres: string;
    temporalServer: string;
    /** The output of `temporal --version` when the benchmark started the dev server. */
    temporalCli: string;
    /** True when the benchmark started its own Temporal dev server, false for BENCH_TEMPORAL_ADDRESS. */
    temporalStartedHere: boolean;
    /** Machine CPU use in the seconds before the stack started, in % of one CPU. A high value means a busy machine. */
    cpuPercentBeforeRun: number | undefined;
  };
  options: Omit<BenchOptions, 'adminDatabaseUrl' | 'temporalAddress'>;
  sequential: InviteRunResult;
  timeline: InviteTimeline;
  throughput: InviteRunResult[];
  accepts: AcceptRunResult;
  listing: ListRunResult;
}

export function describeMachine(stack: BenchStack, cpuPercentBeforeRun: number | undefined): BenchResults['machine'] {
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cpus: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel: release(),
    node: process.version,
    postgres: stack.postgresVersion,
    temporalServer: stack.temporalServerVersion,
    temporalCli: stack.temporalCliVersion,
    temporalStartedHere: stack.temporalStartedHere,
    cpuPercentBeforeRun,
  };
}

function percentiles(summary: Summary | undefined, keys: (keyof Summary)[]): string[] {
  return keys.map((key) => formatMs(summary?.[key]));
}

function errorText(run: { errors: { total: number } }): string {
  return String(run.errors.total);
}

function listRow(variant: ListVariantResult): string[] {
  return [
    variant.name,
    String(variant.pageSize ?? '–'),
    String(variant.latency?.count ?? 0),
    errorText(variant),
    ...percentiles(variant.latency, ['p50', 'p95', 'p99', 'max']),
  ];
}

/** Renders the results as Markdown tables, the same tables BENCHMARKS.md carries. */
export function renderTables(results: BenchResults): string {
  const { machine, sequential, timeline, throughput, accepts, listing } = results;
  const sections: string[] = [];

  sections.push(
    [
      `Machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB, Linux ${machine.kernel}`,
      `Node ${machine.node}, PostgreSQL ${machine.postgres}, Temporal Server ${machine.temporalServer} ` +
        (machine.temporalStartedHere ? `(dev server from ${machine.temporalCli})` : '(a running Temporal Service, not started here)'),
      `Machine CPU before the run: ${machine.cpuPercentBeforeRun?.toFixed(0) ?? '–'} % of one CPU.`,
      `Run started ${results.startedAt} and took ${results.durationSeconds.toFixed(0)} s. All times in milliseconds.`,
    ].join('\n'),
  );

  sections.push(
    '1. Invite latency, sequential (time to the 202)\n\n' +
      markdownTable(
        ['invites', 'errors', 'p50', 'p95', 'p99', 'max', 'mean'],
        [[String(sequential.succeeded), errorText(sequential), ...percentiles(sequential.latency, ['p50', 'p95', 'p99', 'max', 'mean'])]],
      ),
  );

  sections.push(
    `Where the sequential invites spend their time (${timeline.sampled} workflow histories)\n\n` +
      markdownTable(
        ['segment', 'p50', 'p95'],
        (Object.keys(TIMELINE_SEGMENTS) as TimelineSegment[]).map((name) => [
          TIMELINE_SEGMENTS[name],
          ...percentiles(timeline.segments[name], ['p50', 'p95']),
        ]),
      ),
  );

  sections.push(
    '2. Invite throughput, and time from the 202 to the email reaching the fake SendGrid\n\n' +
      markdownTable(
        ['concurrency', 'invites', 'errors', 'invites/s', 'latency p50', 'latency p95', 'latency p99', 'latency max', 'email p50', 'email p95', 'emails missing'],
        throughput.map((run) => [
          String(run.concurrency),
          String(run.succeeded),
          errorText(run),
          run.invitesPerSecond.toFixed(1),
          ...percentiles(run.latency, ['p50', 'p95', 'p99', 'max']),
          ...percentiles(run.emailDelay, ['p50', 'p95']),
          String(run.emailsMissing),
        ]),
      ),
  );

  sections.push(
    '3. Accept latency, sequential (time to the 200), and one argon2id hash alone\n\n' +
      markdownTable(
        ['measured', 'samples', 'errors', 'p50', 'p95', 'max'],
        [
          ['POST /v1/invitations/accept', String(accepts.succeeded), errorText(accepts), ...percentiles(accepts.latency, ['p50', 'p95', 'max'])],
          ['hashPassword() in process', String(accepts.hashOnly?.count ?? 0), '0', ...percentiles(accepts.hashOnly, ['p50', 'p95', 'max'])],
        ],
      ),
  );

  sections.push(
    `4. List latency with ${listing.members.total} members ` +
      `(${listing.members.existing} from the runs above, ${listing.members.inserted} inserted directly)\n\n` +
      markdownTable(
        ['request', 'members on page', 'samples', 'errors', 'p50', 'p95', 'p99', 'max'],
        [...listing.variants.map(listRow), listRow(listing.healthz)],
      ),
  );

  const percent = (value: number | undefined) => (value === undefined ? '–' : value.toFixed(0));
  const resourceRow = (name: string, use: ResourceUse) => [
    name,
    percent(use.benchProcessCpuPercent),
    percent(use.temporalServerCpuPercent),
    percent(use.postgresCpuPercent),
    percent(use.otherCpuPercent),
    percent(use.machineCpuPercent),
    formatMs(use.eventLoopDelayP99Ms),
    formatMs(use.eventLoopDelayMaxMs),
  ];
  sections.push(
    `CPU while the requests ran, in % of one CPU (the machine has ${machine.cpus}); ` +
      `the bench process runs the API, the worker, the load generator and the fake SendGrid\n\n` +
      markdownTable(
        ['run', 'bench process', 'Temporal server', 'Postgres', 'other processes', 'machine', 'event-loop delay p99', 'event-loop delay max'],
        [
          resourceRow('sequential invites', sequential.resources),
          ...throughput.map((run) => resourceRow(`invites at concurrency ${run.concurrency}`, run.resources)),
          resourceRow('sequential accepts', accepts.resources),
          resourceRow('list and health requests', listing.resources),
        ],
      ),
  );

  return `${sections.join('\n\n')}\n`;
}

/** Counts the failed requests and missing emails. A run with failures should not be quoted. */
export function countFailures(results: BenchResults): number {
  const runs = [results.sequential, ...results.throughput];
  return (
    runs.reduce((sum, run) => sum + run.errors.total + run.emailsMissing, 0) +
    results.accepts.errors.total +
    [...results.listing.variants, results.listing.healthz].reduce((sum, variant) => sum + variant.errors.total, 0)
  );
}

/** Returns the largest CPU share, in % of one CPU, that processes outside the benchmark used during a run. */
export function maxOtherCpuPercent(results: BenchResults): number | undefined {
  const uses = [results.sequential, ...results.throughput, results.accepts, results.listing].map((run) => run.resources.otherCpuPercent);
  const known = uses.filter((use): use is number => use !== undefined);
  return known.length === 0 ? undefined : Math.max(...known);
}

/** Formats the results as JSON, without the per-invite records, with fractions rounded to two decimals. */
export function resultsJson(results: BenchResults): string {
  const withoutRecords = (run: InviteRunResult) => ({ ...run, invites: undefined });
  return JSON.stringify(
    { ...results, sequential: withoutRecords(results.sequential), throughput: results.throughput.map(withoutRecords) },
    (_key, value: unknown) => (typeof value === 'number' && !Number.isInteger(value) ? Math.round(value * 100) / 100 : value),
    2,
  );
}
