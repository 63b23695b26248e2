import { parseArgs } from 'node:util';

/** Settings of one benchmark run. The counts are numbers of HTTP requests, except `listMembers`. */
export interface BenchOptions {
  /** Invites sent one after another for the latency figures. */
  sequentialInvites: number;
  /** Invites sent at each concurrency level for the throughput figures. */
  throughputInvites: number;
  concurrencies: number[];
  /** Invitations accepted one after another. Each accept hashes a new password. */
  accepts: number;
  /** Members in the environment when the list requests run. Direct inserts top it up to this many. */
  listMembers: number;
  /** Requests per list variant, after a few unmeasured ones. */
  listRequests: number;
  /** Postgres server where the benchmark creates and drops its own database. */
  adminDatabaseUrl: string;
  /** A running Temporal Service to use, as host:port. When undefined, the benchmark starts a dev server. */
  temporalAddress: string | undefined;
}

const DEFAULTS = {
  sequentialInvites: 500,
  throughputInvites: 200,
  accepts: 50,
  listMembers: 2_000,
  listRequests: 100,
} as const;

const DEFAULT_CONCURRENCIES = [1, 8, 32];
const DEFAULT_ADMIN_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export const USAGE = `Usage: npm run bench -- [options]

Starts a Temporal dev server, a database, a fake SendGrid, a worker and the API, then measures invite,
accept and list requests over HTTP on loopback. Prints tables, then the results as JSON, to stdout.

Options (defaults in brackets; BENCH_SCALE or --scale multiplies every default count):
  --scale <factor>            multiplies the default counts, such as 0.1 for a quick check [1]
  --invites <n>               sequential invites for the latency figures [${DEFAULTS.sequentialInvites}]
  --throughput-invites <n>    invites at each concurrency level [${DEFAULTS.throughputInvites}]
  --concurrency <list>        comma-separated concurrency levels [${DEFAULT_CONCURRENCIES.join(',')}]
  --accepts <n>               sequential accepts; at most the number of sequential invites [${DEFAULTS.accepts}]
  --members <n>               members in the environment for the list requests [${DEFAULTS.listMembers}]
  --list-requests <n>         requests per list variant [${DEFAULTS.listRequests}]
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
        invites: { type: 'string' },
        'throughput-invites': { type: 'string' },
        concurrency: { type: 'string' },
        accepts: { type: 'string' },
        members: { type: 'string' },
        'list-requests': { type: 'string' },
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

  const concurrencies =
    values.concurrency === undefined
      ? DEFAULT_CONCURRENCIES
      : values.concurrency.split(',').map((part) => positiveInteger('--concurrency', part.trim()));

  const options: BenchOptions = {
    sequentialInvites: count('--invites', values.invites, DEFAULTS.sequentialInvites),
    throughputInvites: count('--throughput-invites', values['throughput-invites'], DEFAULTS.throughputInvites),
    concurrencies,
    accepts: count('--accepts', values.accepts, DEFAULTS.accepts),
    listMembers: count('--members', values.members, DEFAULTS.listMembers),
    listRequests: count('--list-requests', values['list-requests'], DEFAULTS.listRequests),
    adminDatabaseUrl: env.BENCH_DATABASE_URL ?? DEFAULT_ADMIN_DATABASE_URL,
    temporalAddress: env.BENCH_TEMPORAL_ADDRESS || undefined,
  };
  if (options.accepts > options.sequentialInvites) {
    throw new UsageError(
      `--accepts (${options.accepts}) must be at most the number of sequential invites (${options.sequentialInvites}), ` +
        'because each accept uses the link from one of those invitations.',
    );
  }
  return options;
}
