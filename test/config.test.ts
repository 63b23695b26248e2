import { describe, expect, test } from '@jest/globals';

import { ConfigError, loadConfig } from '../lib/config.js';
import { parseDuration } from '../lib/duration.js';

const VALID = {
  APP_BASE_URL: 'https://lifecycle.example.com/',
  APP_SECRET: 'x'.repeat(32),
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/lifecycle',
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      return error.problems;
    }
    throw error;
  }
  throw new Error('expected loadConfig to throw');
}

describe('parseDuration', () => {
  test.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['7d', 604_800_000],
    ['250ms', 250],
    [' 3h ', 10_800_000],
  ])('%s is %d ms', (text, milliseconds) => {
    expect(parseDuration(text)).toBe(milliseconds);
  });

  test.each(['', '7', '1.5h', '7 d', '-5s', '5w', 'soon'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('loadConfig', () => {
  test('defaults for invitation timing', () => {
    const config = loadConfig(VALID);
    expect(config.invitation).toEqual({ ttlMs: 604_800_000, reminderAfterMs: 259_200_000, resendCooldownMs: 60_000, maxResends: 5 });
    expect(config.appBaseUrl).toBe('https://lifecycle.example.com');
    expect(config.port).toBe(3000);
    expect(config.email.provider).toBe('log');
  });

  test('missing variables are named', () => {
    const problems = problemsOf({});
    expect(problems).toContain('APP_BASE_URL is required but not set');
    expect(problems).toContain('APP_SECRET is required but not set');
    expect(problems).toContain('DATABASE_URL is required but not set');
  });

  test('invalid values are named', () => {
    const problems = problemsOf({ ...VALID, INVITE_TTL: '7 days', PORT: 'eighty', APP_SECRET: 'short', TRUST_PROXY: 'yes' });
    expect(problems.find((problem) => problem.startsWith('INVITE_TTL '))).toContain('"7 days"');
    expect(problems.some((problem) => problem.startsWith('PORT '))).toBe(true);
    expect(problems.find((problem) => problem.startsWith('APP_SECRET '))).toContain('at least 32 characters');
    expect(problems.some((problem) => problem.startsWith('TRUST_PROXY '))).toBe(true);
  });

  test('false flag stays false', () => {
    expect(loadConfig({ ...VALID, TRUST_PROXY: 'false' }).trustProxy).toBe(false);
    expect(loadConfig({ ...VALID, TRUST_PROXY: 'true' }).trustProxy).toBe(true);
  });

  test('sendgrid needs an API key', () => {
    expect(problemsOf({ ...VALID, EMAIL_PROVIDER: 'sendgrid' })).toContain('SENDGRID_API_KEY is required when EMAIL_PROVIDER=sendgrid');
  });

  test('production refuses the log provider', () => {
    expect(problemsOf({ ...VALID, NODE_ENV: 'production' })).toContain('EMAIL_PROVIDER must be sendgrid when NODE_ENV=production');
  });

  test('operations settings and defaults', () => {
    const defaults = loadConfig(VALID);
    expect(defaults.apiRateLimitPerMinute).toBe(600);
    expect(defaults.shutdown).toEqual({ drainDelayMs: 0, timeoutMs: 10_000 });
    expect(defaults.workerMetricsAddress).toBeUndefined();
    expect(defaults.workerMaxCachedWorkflows).toBe(500);

    const set = loadConfig({ ...VALID, API_RATE_LIMIT_PER_MINUTE: '50', SHUTDOWN_DRAIN_DELAY: '5s', SHUTDOWN_TIMEOUT: '30s', WORKER_METRICS_ADDRESS: '[::1]:9464', WORKER_MAX_CACHED_WORKFLOWS: '0' });
    expect(set.apiRateLimitPerMinute).toBe(50);
    expect(set.workerMaxCachedWorkflows).toBe(0);
    expect(set.shutdown).toEqual({ drainDelayMs: 5_000, timeoutMs: 30_000 });
    expect(set.workerMetricsAddress).toBe('[::1]:9464');
  });

  test('invalid operations settings are named', () => {
    const problems = problemsOf({ ...VALID, API_RATE_LIMIT_PER_MINUTE: '0', SHUTDOWN_DRAIN_DELAY: 'soon', SHUTDOWN_TIMEOUT: '0s', WORKER_METRICS_ADDRESS: '9464', WORKER_MAX_CACHED_WORKFLOWS: '-1' });
    expect(problems.some((problem) => problem.startsWith('API_RATE_LIMIT_PER_MINUTE '))).toBe(true);
    expect(problems.find((problem) => problem.startsWith('SHUTDOWN_DRAIN_DELAY '))).toContain('"soon"');
    expect(problems.find((problem) => problem.startsWith('SHUTDOWN_TIMEOUT '))).toContain('positive duration');
    expect(problems.find((problem) => problem.startsWith('WORKER_METRICS_ADDRESS '))).toContain('host:port');
    expect(problems.some((problem) => problem.startsWith('WORKER_MAX_CACHED_WORKFLOWS '))).toBe(true);
  });
});
