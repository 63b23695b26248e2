import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, release, totalmem } from 'node:os';

import type { BulkResult, WorkerMemory } from './bulk.js';
import type { ListingResult, PageResult } from './listing.js';
import type { BenchOptions } from './options.js';
import type { ResourceUse } from './resources.js';
import type { SignInResult } from './sign-in.js';
import type { SsoResult } from './sso.js';
import type { BenchStack } from './stack.js';
import { formatMs, markdownTable, type Summary } from './stats.js';
import type { ThroughputResult } from './throughput.js';
import { TIMELINE_SEGMENTS, type TimelineSegment } from './timeline.js';

export const RESULTS_START = '<!-- bench:results:start -->';
export const RESULTS_END = '<!-- bench:results:end -->';

/** The targets the figures are checked against, for two CPUs with everything on one machine. */
export const TARGETS = {
  invitationsPerSecond: 50,
  postP99Ms: 100,
  baselineRatio: 0.8,
  listP99Ms: 20,
  listSqlRatio: 2,
  workerRssMiB: 1024,
  /** OWASP Password Storage Cheat Sheet, argon2id minimum: 19 MiB, 2 passes, 1 lane. */
  argon2: { memoryKiB: 19_456, timeCost: 2 },
} as const;

export interface MachineDescription {
  cpuModel: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  postgres: string;
  temporalServer: string;
  temporalCli: string;
  temporalStartedHere: boolean;
  /** Machine CPU use in the seconds before the stack started, in % of one CPU. */
  cpuPercentBeforeRun: number | undefined;
}

export interface BenchResults {
  startedAt: string;
  durationSeconds: number;
  machine: MachineDescription;
  options: Omit<BenchOptions, 'adminDatabaseUrl' | 'temporalAddress' | 'resultsPage' | 'workerProfileDir'>;
  bulk: BulkResult;
  throughput: ThroughputResult;
  signIn: SignInResult;
  sso: SsoResult;
  listing: ListingResult;
}

export function describeMachine(stack: BenchStack, cpuPercentBeforeRun: number | undefined): MachineDescription {
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

const ms = (summary: Summary | undefined, key: keyof Summary) => formatMs(summary?.[key]);
const ratio = (value: number | undefined, base: number | undefined) =>
  value === undefined || base === undefined || base === 0 ? undefined : value / base;
const times = (value: number | undefined) => (value === undefined ? '–' : `${value.toFixed(2)}×`);
const percent = (value: number | undefined) => (value === undefined ? '–' : value.toFixed(0));
const mib = (value: number | undefined) => (value === undefined ? '–' : value.toFixed(0));
function verdict(met: boolean | undefined): string {
  if (met === undefined) {
    return 'not measured';
  }
  return met ? 'met' : 'missed';
}

/** Reads memory and passes from an argon2 parameter string such as `argon2id$v=19$m=19456,t=2,p=1`. */
function argon2Cost(parameters: string): { memoryKiB: number; timeCost: number } | undefined {
  const match = /m=(\d+),t=(\d+)/.exec(parameters);
  return match ? { memoryKiB: Number(match[1]), timeCost: Number(match[2]) } : undefined;
}

function worstPageAtLargestTier(listing: ListingResult): { api: PageResult; ratio: number | undefined } | undefined {
  const tier = listing.tiers.at(-1);
  if (!tier || tier.pages.length === 0) {
    return undefined;
  }
  const worst = tier.pages.reduce((slowest, page) => ((page.api?.p99 ?? Infinity) > (slowest.api?.p99 ?? Infinity) ? page : slowest));
  const ratios = tier.pages.map((page) => ratio(page.api?.p99, page.sql?.p99)).filter((value): value is number => value !== undefined);
  return { api: worst, ratio: ratios.length === 0 ? undefined : Math.max(...ratios) };
}

/** Renders the targets, each with the measured value, the baseline ratio and whether it is met. */
function targetsTable(results: BenchResults): string {
  const { throughput, listing, bulk, signIn } = results;
  const rate = throughput.invitations.invitationsToEmailPerSecond;
  const postP99 = throughput.invitations.latency?.p99;
  const worst = worstPageAtLargestTier(listing);
  const largestTier = listing.tiers.at(-1)?.members ?? 0;
  const rss = bulk.memory.withOpenWorkflows.rssMiB;
  const cost = argon2Cost(signIn.argon2Parameters);

  const rows: string[][] = [
    [`invitations per second (at least ${TARGETS.invitationsPerSecond}, ${throughput.durationMs / 1000} s)`, rate.toFixed(1), verdict(rate >= TARGETS.invitationsPerSecond)],
    [`POST p99 at that rate (at most ${TARGETS.postP99Ms} ms)`, formatMs(postP99), verdict(postP99 === undefined ? undefined : postP99 <= TARGETS.postP99Ms)],
    [`share of the baseline's rate (at least ${TARGETS.baselineRatio})`, throughput.ratio.toFixed(2), verdict(throughput.ratio >= TARGETS.baselineRatio)],
    [
      `list p99 of the slowest page at ${largestTier} members (at most ${TARGETS.listP99Ms} ms)`,
      worst ? `${formatMs(worst.api.api?.p99)} (${worst.api.depth}, limit=${worst.api.limit})` : '–',
      verdict(worst?.api.api ? worst.api.api.p99 <= TARGETS.listP99Ms : undefined),
    ],
    [`list p99 over the query alone, worst page (at most ${TARGETS.listSqlRatio}×)`, times(worst?.ratio), verdict(worst?.ratio === undefined ? undefined : worst.ratio <= TARGETS.listSqlRatio)],
    [
      `worker RSS with ${bulk.memory.withOpenWorkflows.openInvitationWorkflows} open invitation workflows (at most ${TARGETS.workerRssMiB} MiB)`,
      `${mib(rss)} MiB`,
      verdict(rss === undefined ? undefined : rss <= TARGETS.workerRssMiB),
    ],
    [
      'argon2id cost (at least m=19456 KiB, t=2)',
      signIn.argon2Parameters,
      verdict(cost ? cost.memoryKiB >= TARGETS.argon2.memoryKiB && cost.timeCost >= TARGETS.argon2.timeCost : undefined),
    ],
    [
      'GET p99 during 20 concurrent sign-ins, over the GET alone',
      `${formatMs(signIn.getDuringBursts?.p99)} / ${formatMs(signIn.getAlone?.p99)} ms = ${times(ratio(signIn.getDuringBursts?.p99, signIn.getAlone?.p99))}`,
      'no numeric target',
    ],
  ];
  return markdownTable(['target', 'measured', 'verdict'], rows);
}

function memoryRow(name: string, memory: WorkerMemory, idle: WorkerMemory): string[] {
  return [name, String(memory.openInvitationWorkflows), mib(memory.rssMiB), mib(memory.peakRssMiB), times(ratio(memory.rssMiB, idle.rssMiB))];
}

function rateRow(
  name: string,
  run: { done: number; errors: number; perSecond: number; call: Summary | undefined; completion: Summary | undefined },
): string[] {
  const keys = ['p50', 'p95', 'p99'] as const;
  return [
    name,
    String(run.done),
    String(run.errors),
    run.perSecond.toFixed(1),
    ...keys.map((key) => ms(run.call, key)),
    ...keys.map((key) => ms(run.completion, key)),
  ];
}

function resourceRow(name: string, use: ResourceUse): string[] {
  return [
    name,
    percent(use.benchProcessCpuPercent),
    percent(use.workerCpuPercent),
    percent(use.baselineWorkerCpuPercent),
    percent(use.temporalServerCpuPercent),
    percent(use.postgresCpuPercent),
    percent(use.otherCpuPercent),
    percent(use.machineCpuPercent),
    formatMs(use.eventLoopDelayP99Ms),
  ];
}

/** Renders the results as the Markdown that goes between the markers of BENCHMARKS.md. */
export function renderResults(results: BenchResults): string {
  const { machine, bulk, throughput, signIn, sso, listing } = results;
  const { invitations, baseline, timeline } = throughput;
  const sections: string[] = [];

  sections.push(
    [
      `Run started ${results.startedAt} and took ${results.durationSeconds.toFixed(0)} s: ${machine.cpus} CPUs (${machine.cpuModel}), ` +
        `${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}, PostgreSQL ${machine.postgres}, ` +
        `Temporal Server ${machine.temporalServer} ` +
        (machine.temporalStartedHere ? `(dev server from CLI ${machine.temporalCli}).` : '(a running Temporal Service, not started here).'),
      `Other processes used ${percent(machine.cpuPercentBeforeRun)} % of one CPU in the 3 s before the run; the CPU table below gives their share during each benchmark.`,
      'All times are in milliseconds.',
    ].join(' '),
  );

  sections.push(`### Targets\n\n${targetsTable(results)}`);

  sections.push(
    `### Invitation throughput, ${throughput.durationMs / 1000} s from ${throughput.concurrency} loops, against the baseline\n\n` +
      markdownTable(
        ['run', 'done', 'errors', 'per second', 'call p50', 'call p95', 'call p99', 'to completion p50', 'to completion p95', 'to completion p99'],
        [
          rateRow('invites: POST, then the email at the fake SendGrid', {
            done: invitations.succeeded - invitations.emailsMissing,
            errors: invitations.errors.total + invitations.emailsMissing,
            perSecond: invitations.invitationsToEmailPerSecond,
            call: invitations.latency,
            completion: invitations.inviteToEmail,
          }),
          rateRow("baseline: start, then the no-op workflow's result", {
            done: baseline.completed,
            errors: baseline.errors.total,
            perSecond: baseline.workflowsPerSecond,
            call: baseline.startLatency,
            completion: baseline.startToCompletion,
          }),
        ],
      ) +
      `\n\nRatio of the rates: ${throughput.ratio.toFixed(2)}. The API answered ${invitations.invitesPerSecond.toFixed(1)} invites per second.`,
  );

  sections.push(
    `Where the first ${timeline.sampled} invites of that run spent their time, from their workflow histories\n\n` +
      markdownTable(
        ['segment', 'p50', 'p95'],
        (Object.keys(TIMELINE_SEGMENTS) as TimelineSegment[]).map((name) => [TIMELINE_SEGMENTS[name], ms(timeline.segments[name], 'p50'), ms(timeline.segments[name], 'p95')]),
      ),
  );

  sections.push(
    `### Bulk onboarding and worker memory\n\n` +
      markdownTable(
        ['invitations', 'batches', 'wall time (s)', 'invited', 'not invited', 'lost (invitation / email)', 'duplicated (invitation / email)', 'errors'],
        [
          [
            String(bulk.invitations),
            String(bulk.batches),
            bulk.wallSeconds.toFixed(1),
            String(bulk.invited),
            JSON.stringify(bulk.notInvited),
            `${bulk.lost.invitations} / ${bulk.lost.emails}`,
            `${bulk.duplicated.invitations} / ${bulk.duplicated.emails}`,
            String(bulk.errors.total),
          ],
        ],
      ) +
      '\n\nThe worker process\'s resident memory (VmRSS and its peak VmHWM from /proc, in MiB), against the idle worker:\n\n' +
      markdownTable(
        ['when', 'open invitation workflows', 'RSS', 'peak RSS', 'RSS over idle'],
        [
          memoryRow('idle, after start-up', bulk.memory.idle, bulk.memory.idle),
          memoryRow('bulk invitations waiting on their timers', bulk.memory.withOpenWorkflows, bulk.memory.idle),
          memoryRow('after revoking them all', bulk.memory.afterCompletion, bulk.memory.idle),
        ],
      ) +
      `\n\nRevoking the ${bulk.revoke.count} invitations through the API took ${bulk.revoke.wallSeconds.toFixed(1)} s, with ${bulk.revoke.errors} errors.`,
  );

  sections.push(
    `### Sign-in (argon2id ${signIn.argon2Parameters}, ${signIn.hashConcurrency} hash at a time)\n\n` +
      markdownTable(
        ['measured', 'samples', 'p50', 'p95', 'p99', 'max'],
        [
          ['POST /v1/auth/login, one after another', signIn.login],
          ['baseline: verifyPassword() alone in process', signIn.verifyOnly],
          [`POST /v1/auth/login, ${signIn.bursts} bursts of 20 at once`, signIn.burstLogin],
          ['GET …/users?limit=50 alone', signIn.getAlone],
          ['GET …/users?limit=50 during the bursts', signIn.getDuringBursts],
          ['GET /v1/auth/sso/callback (Okta connection, local provider)', sso.callback],
          ["baseline: the provider's token endpoint alone", sso.tokenEndpointOnly],
        ].map(([name, summary]) => [name as string, String((summary as Summary | undefined)?.count ?? 0), ...(['p50', 'p95', 'p99', 'max'] as const).map((key) => ms(summary as Summary | undefined, key))]),
      ) +
      `\n\nSign-in p50 over verification alone: ${times(ratio(signIn.login?.p50, signIn.verifyOnly?.p50))}. ` +
      `SSO callback p50 over the token endpoint alone: ${times(ratio(sso.callback?.p50, sso.tokenEndpointOnly?.p50))}. ` +
      `Errors: ${signIn.errors.total + sso.errors.total}.`,
  );

  const pageRows = listing.tiers.flatMap((tier) =>
    tier.pages.map((page) => [
      String(tier.members),
      `${page.depth}, limit=${page.limit}`,
      String(page.offset),
      ms(page.api, 'p50'),
      ms(page.api, 'p99'),
      ms(page.sql, 'p50'),
      ms(page.sql, 'p99'),
      times(ratio(page.api?.p99, page.sql?.p99)),
      page.plan.indexes.join(', ') || 'none',
      page.plan.scansOrSorts ? 'yes' : 'no',
      String(page.plan.sharedBuffers),
    ]),
  );
  sections.push(
    `### Member list, ${listing.requests} requests per page\n\n` +
      markdownTable(
        ['members', 'page', 'members before', 'API p50', 'API p99', 'query p50', 'query p99', 'API p99 over query p99', 'indexes in the plan', 'seq scan or sort', 'buffers'],
        pageRows,
      ) +
      '\n\nFilling the environment: ' +
      listing.tiers.map((tier) => `${tier.insertSeconds.toFixed(1)} s up to ${tier.members} members`).join(', ') +
      '.',
  );

  sections.push(
    `### CPU during each benchmark\n\nIn % of one CPU, so the machine tops out at ${machine.cpus * 100}. "bench" is this process (the API, the load generator and the fake SendGrid). ` +
      '"other" is the machine\'s busy time minus the listed processes: the load from other people\'s work on this shared machine.\n\n' +
      markdownTable(
        ['benchmark', 'bench', 'worker', 'baseline worker', 'Temporal', 'Postgres', 'other', 'machine', 'event-loop delay p99'],
        [
          resourceRow('bulk onboarding', bulk.resources),
          resourceRow('invitation throughput', invitations.resources),
          resourceRow('baseline', baseline.resources),
          resourceRow('sign-in', signIn.resources),
          ...listing.tiers.map((tier) => resourceRow(`list, ${tier.members} members`, tier.resources)),
        ],
      ),
  );

  return `${sections.join('\n\n')}\n`;
}

const round = (_key: string, value: unknown) => (typeof value === 'number' && !Number.isInteger(value) ? Math.round(value * 100) / 100 : value);

/** Returns one JSON line per benchmark, without the per-invite records. */
export function resultLines(results: BenchResults): string[] {
  const { invites: _invites, ...invitations } = results.throughput.invitations;
  const common = { startedAt: results.startedAt, machine: results.machine };
  const { memory, revoke, ...bulk } = results.bulk;
  return [
    { benchmark: 'invitation-throughput', ...common, ...results.throughput, invitations, targets: TARGETS },
    { benchmark: 'bulk-onboarding', ...common, ...bulk },
    { benchmark: 'worker-memory', ...common, ...memory, revoke },
    { benchmark: 'listing', ...common, ...results.listing },
    { benchmark: 'sign-in', ...common, ...results.signIn, sso: results.sso },
  ].map((line) => JSON.stringify(line, round));
}

/** Counts failed requests, lost or duplicated invitations and missing emails. A run with failures should not be quoted. */
export function countFailures(results: BenchResults): number {
  const { throughput, bulk, signIn, listing } = results;
  return (
    throughput.invitations.errors.total +
    throughput.invitations.emailsMissing +
    throughput.baseline.errors.total +
    bulk.errors.total +
    bulk.lost.invitations +
    bulk.lost.emails +
    bulk.duplicated.invitations +
    bulk.duplicated.emails +
    signIn.errors.total +
    results.sso.errors.total +
    listing.tiers.reduce((sum, tier) => sum + tier.pages.reduce((pages, page) => pages + page.apiErrors.total, 0), 0)
  );
}

/** Returns the largest CPU share, in % of one CPU, that processes outside the benchmark used during a benchmark. */
export function maxOtherCpuPercent(results: BenchResults): number | undefined {
  const uses = [
    results.bulk.resources,
    results.throughput.invitations.resources,
    results.throughput.baseline.resources,
    results.signIn.resources,
    ...results.listing.tiers.map((tier) => tier.resources),
  ].map((use) => use.otherCpuPercent);
  const known = uses.filter((use): use is number => use !== undefined);
  return known.length === 0 ? undefined : Math.max(...known);
}

/** Returns the page with the positions of its result markers. Throws when a marker is missing, so a run can check before it starts. */
export async function readResultsPage(path: string): Promise<{ page: string; start: number; end: number }> {
  const page = await readFile(path, 'utf8');
  const start = page.indexOf(RESULTS_START);
  const end = page.indexOf(RESULTS_END);
  if (start === -1 || end < start) {
    throw new Error(`${path} has no "${RESULTS_START}" … "${RESULTS_END}" section for the results; add both markers on lines of their own, or pass --no-write.`);
  }
  return { page, start, end };
}

/** Replaces the text between the result markers of the page with `markdown`. */
export async function writeResultsPage(path: string, markdown: string): Promise<void> {
  const { page, start, end } = await readResultsPage(path);
  await writeFile(path, `${page.slice(0, start + RESULTS_START.length)}\n\n${markdown}\n${page.slice(end)}`);
}
