import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** Settings of one benchmark run. */
export interface BenchOptions {
  /** How long the invitation throughput run and its baseline each send, in milliseconds. */
  throughputMs: number;
  /** Loops that send invites, and start baseline workflows, at the same time. */
  concurrency: number;
  /** Invitations of the bulk onboarding, in batches of at most 1,000. */
  bulkInvitations: number;
  /** Members in the listing environment for each round of list requests. */
  listTiers: number[];
  /** Requests per measured page, and per query alone. */
  listRequests: number;
  /** Sign-ins one after another, and verifications alone. */
  signInRequests: number;
  /** Bursts of 20 concurrent sign-ins. */
  signInBursts: number;
  /** Postgres server where the benchmark creates and drops its own database. */
  adminDatabaseUrl: string;
  /** A running Temporal Service to use, as host:port. When undefined, the benchmark starts a dev server. */
  temporalAddress: string | undefined;
  /** BENCHMARKS.md, whose results section the run rewrites, or undefined to leave it alone. */
  resultsPage: string | undefined;
  /** Folder for the worker's CPU profile, or undefined for none. */
  workerProfileDir: string | undefined;
}

const DEFAULTS = {
  throughputSeconds: 60,
  concurrency: 16,
  bulkInvitations: 10_000,
  listTiers: [1_000, 100_000, 1_000_000],
  listRequests: 100,
  signInRequests: 100,
  signInBursts: 5,
} as const;

const DEFAULT_ADMIN_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const DEFAULT_RESULTS_PAGE = 'BENCHMARKS.md';

export const USAGE = `Usage: npm run bench -- [options]

Starts a Temporal dev server, a database, a fake SendGrid, the worker and a baseline worker in their own
processes, and the API, then runs the benchmark suite on loopback: bulk onboarding and worker memory,
invitation throughput against a bare Temporal baseline, sign-in, and member lists. Prints one JSON line
per benchmark to stdout and rewrites the results section of BENCHMARKS.md.

Options (defaults in brackets; BENCH_SCALE or --scale multiplies every default count and the duration):
  --scale <factor>            multiplies the defaults, such as 0.05 for a quick check [1]
  --duration <seconds>        how long the invitation run and the baseline each send [${DEFAULTS.throughputSeconds}]
  --concurrency <n>           loops sending invites, and baseline workflows, at once; not scaled [${DEFAULTS.concurrency}]
  --bulk <n>                  invitations of the bulk onboarding [${DEFAULTS.bulkInvitations}]
  --tiers <list>              comma-separated member counts for the list requests [${DEFAULTS.listTiers.join(',')}]
  --list-requests <n>         requests per measured page [${DEFAULTS.listRequests}]
  --sign-in-requests <n>      sign-ins one after another [${DEFAULTS.signInRequests}]
  --bursts <n>                bursts of 20 concurrent sign-ins [${DEFAULTS.signInBursts}]
  --no-write                  leaves BENCHMARKS.md alone
  --profile-worker <dir>      writes a V8 CPU profile of the worker into <dir> (read it with
                              \`npm run bench:profile -- <file>\` or Chrome DevTools); profiling slows the worker
  --help                      prints this text

Environment:
  BENCH_SCALE                 same as --scale; the flag wins
  BENCH_DATABASE_URL          Postgres server to create the database on [${DEFAULT_ADMIN_DATABASE_URL}]
  BENCH_TEMPORAL_ADDRESS      host:port of a running Temporal Service to use instead of starting a dev server
  TEMPORAL_CLI_PATH           Temporal CLI to run; otherwise \`temporal\` on PATH, then .data/bin
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

function positiveInteger(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new UsageError(`${name} must be a whole number of at least 1, got "${text}".`);
  }
  return value;
}

function positiveNumber(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${name} must be a number greater than 0, such as 0.1 or 2, got "${text}".`);
  }
  return value;
}

/** Returns the options, or undefined when --help was given. Throws a UsageError that names the bad value. */
export function parseBenchOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      options: {
        scale: { type: 'string' },
        duration: { type: 'string' },
        concurrency: { type: 'string' },
        bulk: { type: 'string' },
        tiers: { type: 'string' },
        'list-requests': { type: 'string' },
        'sign-in-requests': { type: 'string' },
        bursts: { type: 'string' },
        'no-write': { type: 'boolean' },
        'profile-worker': { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    return undefined;
  }

  const scaleText = values.scale ?? env.BENCH_SCALE;
  const scale = scaleText === undefined ? 1 : positiveNumber(values.scale === undefined ? 'BENCH_SCALE' : '--scale', scaleText);
  const count = (flag: string, text: string | undefined, defaultValue: number) =>
    text === undefined ? Math.max(1, Math.round(defaultValue * scale)) : positiveInteger(flag, text);

  const listTiers =
    values.tiers === undefined
      ? DEFAULTS.listTiers.map((tier) => Math.max(10, Math.round(tier * scale)))
      : values.tiers.split(',').map((part) => positiveInteger('--tiers', part.trim()));

  return {
    throughputMs: 1000 * count('--duration', values.duration, DEFAULTS.throughputSeconds),
    concurrency: values.concurrency === undefined ? DEFAULTS.concurrency : positiveInteger('--concurrency', values.concurrency),
    bulkInvitations: count('--bulk', values.bulk, DEFAULTS.bulkInvitations),
    listTiers,
    listRequests: count('--list-requests', values['list-requests'], DEFAULTS.listRequests),
    signInRequests: count('--sign-in-requests', values['sign-in-requests'], DEFAULTS.signInRequests),
    signInBursts: count('--bursts', values.bursts, DEFAULTS.signInBursts),
    adminDatabaseUrl: env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_DATABASE_URL,
    temporalAddress: env.BENCH_TEMPORAL_ADDRESS || undefined,
    resultsPage: values['no-write'] ? undefined : DEFAULT_RESULTS_PAGE,
    workerProfileDir: values['profile-worker'] ? resolve(values['profile-worker']) : undefined,
  };
}
