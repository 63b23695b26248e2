import { z } from 'zod';

import { parseDuration } from './duration.js';
import { deriveKey } from './secrets.js';

/** Parses a duration variable such as `90s` or `7d` into milliseconds; `allowZero` also accepts `0s`. */
export function duration(defaultValue: string, { allowZero = false } = {}) {
  return z
    .string()
    .default(defaultValue)
    .transform((text, context) => {
      const milliseconds = parseDuration(text);
      if (milliseconds === undefined || milliseconds < 0 || (milliseconds === 0 && !allowZero)) {
        const kind = allowZero ? 'duration' : 'positive duration';
        context.addIssue({ code: 'custom', message: `must be a ${kind} such as 90s, 15m or 7d, got "${text}"` });
        return z.NEVER;
      }
      return milliseconds;
    });
}

/** Parses a true/false variable. */
export function booleanFlag(defaultValue: boolean) {
  // Boolean('false') is true, so the accepted spellings are listed.
  return z
    .enum(['true', 'false', '1', '0'])
    .default(defaultValue ? 'true' : 'false')
    .transform((text) => text === 'true' || text === '1');
}

const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

/** `id:base64key,id:base64key`: the first key encrypts, every key decrypts. */
export const encryptionKeys = z
  .string()
  .optional()
  .transform((text, context) => {
    if (text === undefined || text.trim() === '') {
      return [];
    }
    const keys: { id: string; key: Buffer }[] = [];
    for (const entry of text.split(',')) {
      const separator = entry.indexOf(':');
      const id = entry.slice(0, separator).trim();
      const key = Buffer.from(entry.slice(separator + 1).trim(), 'base64');
      if (separator <= 0 || !KEY_ID_PATTERN.test(id)) {
        context.addIssue({ code: 'custom', message: 'must be a comma-separated list of id:base64key, with ids of letters, digits, - and _' });
        return z.NEVER;
      }
      if (key.length !== 32) {
        context.addIssue({ code: 'custom', message: `key "${id}" must be 32 bytes in base64; generate one with \`openssl rand -base64 32\`` });
        return z.NEVER;
      }
      if (keys.some((existing) => existing.id === id)) {
        context.addIssue({ code: 'custom', message: `key id "${id}" appears twice` });
        return z.NEVER;
      }
      keys.push({ id, key });
    }
    return keys;
  });

const environmentSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    PORT: z.coerce.number().int().min(0).max(65_535).default(3000),
    APP_BASE_URL: z.url({ protocol: /^https?$/ }).transform((url) => url.replace(/\/+$/, '')),
    APP_SECRET: z.string().min(32, 'must be at least 32 characters; generate one with `openssl rand -base64 32`'),
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection URL'),
    DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(100).default(10),
    TEMPORAL_ADDRESS: z.string().min(1).default('localhost:7233'),
    TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
    TEMPORAL_TASK_QUEUE: z.string().min(1).default('lifecycle'),
    TEMPORAL_VISIBILITY_SHOW_EMAILS: booleanFlag(false),
    PAYLOAD_ENCRYPTION_KEYS: encryptionKeys,
    TEMPORAL_UI_ORIGINS: z
      .string()
      .default('http://localhost:8233,http://127.0.0.1:8233')
      .transform((text) => text.split(',').map((origin) => origin.trim()).filter(Boolean))
      .pipe(z.array(z.url({ protocol: /^https?$/ }).refine((url) => new URL(url).origin === url, 'must be an origin such as https://temporal.example.com, without a path'))),
    INVITE_TTL: duration('7d'),
    INVITE_REMINDER_AFTER: duration('3d'),
    INVITE_RESEND_COOLDOWN: duration('60s'),
    INVITE_MAX_RESENDS: z.coerce.number().int().min(0).max(100).default(5),
    EMAIL_PROVIDER: z.enum(['log', 'sendgrid']).default('log'),
    EMAIL_FROM: z.email().default('no-reply@lifecycle.local'),
    SENDGRID_API_KEY: z.string().min(1).optional(),
    SENDGRID_API_URL: z.url({ protocol: /^https?$/ }).optional(),
    TRUST_PROXY: booleanFlag(false),
    TOKEN_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).max(100_000).default(30),
    SESSION_IDLE_TIMEOUT: duration('30m'),
    SESSION_ABSOLUTE_TIMEOUT: duration('12h'),
    LOGIN_RATE_LIMIT_PER_EMAIL: z.coerce.number().int().min(1).max(100_000).default(10),
    LOGIN_RATE_LIMIT_PER_IP: z.coerce.number().int().min(1).max(100_000).default(100),
    LOGIN_RATE_LIMIT_WINDOW: duration('15m'),
    EMAIL_CHANGE_TTL: duration('24h'),
    PASSWORD_RESET_TTL: duration('1h'),
    BATCH_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(10),
    API_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(600),
    SHUTDOWN_DRAIN_DELAY: duration('0s', { allowZero: true }),
    SHUTDOWN_TIMEOUT: duration('10s'),
    WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().min(0).max(100_000).default(500),
    WORKER_METRICS_ADDRESS: z
      .string()
      .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, such as 0.0.0.0:9464 or [::1]:9464')
      .optional(),
  })
  .superRefine((values, context) => {
    if (values.PAYLOAD_ENCRYPTION_KEYS.some((key) => key.id === DERIVED_PAYLOAD_KEY_ID)) {
      context.addIssue({ code: 'custom', path: ['PAYLOAD_ENCRYPTION_KEYS'], message: `must not use the key id "${DERIVED_PAYLOAD_KEY_ID}", which names the key derived from APP_SECRET` });
    }
    if (values.EMAIL_PROVIDER === 'sendgrid' && !values.SENDGRID_API_KEY) {
      context.addIssue({ code: 'custom', path: ['SENDGRID_API_KEY'], message: 'is required when EMAIL_PROVIDER=sendgrid' });
    }
    // The log provider writes single-use links to the log, which production logs must never hold.
    if (values.EMAIL_PROVIDER === 'log' && values.NODE_ENV === 'production') {
      context.addIssue({ code: 'custom', path: ['EMAIL_PROVIDER'], message: 'must be sendgrid when NODE_ENV=production' });
    }
  });

export interface InvitationTiming {
  /** How long an invitation link stays valid, in milliseconds; a resend starts it again. */
  ttlMs: number;
  /** Delay after the latest email before the single reminder, in milliseconds. */
  reminderAfterMs: number;
  /** Minimum time between two resends, in milliseconds. */
  resendCooldownMs: number;
  maxResends: number;
}

export interface Config {
  nodeEnv: 'development' | 'test' | 'production';
  logLevel: string;
  port: number;
  appBaseUrl: string;
  appSecret: string;
  databaseUrl: string;
  databasePoolMax: number;
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    /** Whether workflow summaries in the Temporal Web UI show whole email addresses instead of masked ones. */
    showEmails: boolean;
    /**
     * AES-256-GCM keys of the payload codec: the first encrypts and all decrypt. The PAYLOAD_ENCRYPTION_KEYS
     * come first, and a key derived from APP_SECRET (id `app-secret`) is always last, so payloads that were
     * encrypted before the variable was set still decrypt.
     */
    payloadKeys: { id: string; key: Buffer }[];
    /** Origins of Temporal Web UIs that may call the codec server from a browser. */
    uiOrigins: string[];
  };
  invitation: InvitationTiming;
  email: {
    provider: 'log' | 'sendgrid';
    from: string;
    sendgridApiKey: string | undefined;
    sendgridApiUrl: string | undefined;
  };
  trustProxy: boolean;
  /** Requests per minute and client address on the routes that take an invitation token. */
  tokenRateLimitPerMinute: number;
  session: { idleTimeoutMs: number; absoluteTimeoutMs: number };
  /** Sign-in attempts allowed per window, per email address and per client address. */
  loginRateLimit: { perEmail: number; perIp: number; windowMs: number };
  emailChangeTtlMs: number;
  passwordResetTtlMs: number;
  /** Invitation workflows a bulk onboarding starts at the same time. */
  batchConcurrency: number;
  /** Requests per minute to the authenticated API, per API key, session or operator key. */
  apiRateLimitPerMinute: number;
  shutdown: {
    /** After SIGTERM, how long the API keeps serving while /readyz returns 503, in milliseconds. */
    drainDelayMs: number;
    /**
     * In milliseconds: how long the API's in-flight requests get after the drain delay before their
     * connections are closed, and the worker's shutdownGraceTime for running activities.
     */
    timeoutMs: number;
  };
  /** host:port of the worker's Prometheus endpoint; unset, the worker exports no metrics. */
  /**
   * Workflows the worker keeps in memory between their tasks. Others are dropped and replayed from
   * history on their next task, which for an invitation waiting days on a timer costs less than the memory.
   */
  workerMaxCachedWorkflows: number;
  workerMetricsAddress: string | undefined;
}

/** The id of the payload key derived from APP_SECRET; PAYLOAD_ENCRYPTION_KEYS may not use it. */
export const DERIVED_PAYLOAD_KEY_ID = 'app-secret';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads and validates the configuration from environment variables.
 * Throws a ConfigError that names every missing or invalid variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = environmentSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.') || '(environment)';
      const message = issue.code === 'invalid_type' && env[name] === undefined ? 'is required but not set' : issue.message;
      return `${name} ${message}`;
    });
    throw new ConfigError(problems);
  }

  const values = parsed.data;
  return {
    nodeEnv: values.NODE_ENV,
    logLevel: values.LOG_LEVEL,
    port: values.PORT,
    appBaseUrl: values.APP_BASE_URL,
    appSecret: values.APP_SECRET,
    databaseUrl: values.DATABASE_URL,
    databasePoolMax: values.DATABASE_POOL_MAX,
    temporal: {
      address: values.TEMPORAL_ADDRESS,
      namespace: values.TEMPORAL_NAMESPACE,
      taskQueue: values.TEMPORAL_TASK_QUEUE,
      showEmails: values.TEMPORAL_VISIBILITY_SHOW_EMAILS,
      uiOrigins: values.TEMPORAL_UI_ORIGINS,
      payloadKeys: [...values.PAYLOAD_ENCRYPTION_KEYS, { id: DERIVED_PAYLOAD_KEY_ID, key: deriveKey(values.APP_SECRET, 'payload-encryption') }],
    },
    invitation: {
      ttlMs: values.INVITE_TTL,
      reminderAfterMs: values.INVITE_REMINDER_AFTER,
      resendCooldownMs: values.INVITE_RESEND_COOLDOWN,
      maxResends: values.INVITE_MAX_RESENDS,
    },
    email: {
      provider: values.EMAIL_PROVIDER,
      from: values.EMAIL_FROM,
      sendgridApiKey: values.SENDGRID_API_KEY,
      sendgridApiUrl: values.SENDGRID_API_URL,
    },
    trustProxy: values.TRUST_PROXY,
    tokenRateLimitPerMinute: values.TOKEN_RATE_LIMIT_PER_MINUTE,
    session: { idleTimeoutMs: values.SESSION_IDLE_TIMEOUT, absoluteTimeoutMs: values.SESSION_ABSOLUTE_TIMEOUT },
    loginRateLimit: {
      perEmail: values.LOGIN_RATE_LIMIT_PER_EMAIL,
      perIp: values.LOGIN_RATE_LIMIT_PER_IP,
      windowMs: values.LOGIN_RATE_LIMIT_WINDOW,
    },
    emailChangeTtlMs: values.EMAIL_CHANGE_TTL,
    passwordResetTtlMs: values.PASSWORD_RESET_TTL,
    batchConcurrency: values.BATCH_CONCURRENCY,
    apiRateLimitPerMinute: values.API_RATE_LIMIT_PER_MINUTE,
    shutdown: { drainDelayMs: values.SHUTDOWN_DRAIN_DELAY, timeoutMs: values.SHUTDOWN_TIMEOUT },
    workerMaxCachedWorkflows: values.WORKER_MAX_CACHED_WORKFLOWS,
    workerMetricsAddress: values.WORKER_METRICS_ADDRESS,
  };
}

/** Loads the configuration or ends the process with a message that names each bad variable. */
export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
}
