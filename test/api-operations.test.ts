import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { hashPassword } from '../lib/passwords.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

const LIMIT = 3;
const PASSWORD = 'operations test password';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness({ inProcessWorker: false, env: { API_RATE_LIMIT_PER_MINUTE: String(LIMIT) } });
});

afterAll(async () => {
  await harness?.close();
});

function listMembers(credential: string) {
  return harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`).set('Authorization', `Bearer ${credential}`);
}

/** Returns the value of the series with exactly these labels in a Prometheus text exposition, or 0. */
function sample(exposition: string, name: string, labels: Record<string, string>): number {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  for (const line of exposition.split('\n')) {
    // Route templates contain braces, so the label set is everything between the first { and the last }.
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/.exec(line);
    if (!match || match[1] !== name) {
      continue;
    }
    const found = [...match[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]);
    if (JSON.stringify(found.sort()) === wanted) {
      return Number(match[3]);
    }
  }
  return 0;
}

describe('rate limit per caller', () => {
  test('API key gets 429 past limit', async () => {
    const { key } = await harness.addMember(uniqueEmail('limited'), ['user_administrator']);
    for (let request = 0; request < LIMIT; request += 1) {
      expect((await listMembers(key)).status).toBe(200);
    }

    const limited = await listMembers(key);
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(limited.body.error.details).toEqual({ retryAfterSeconds: retryAfter });
  });

  test('other credentials keep their budget', async () => {
    // All requests of a test come from 127.0.0.1, so a limit per address would catch these too.
    const first = await harness.addMember(uniqueEmail('first'), ['user_administrator']);
    const second = await harness.addMember(uniqueEmail('second'), ['user_administrator']);
    for (let request = 0; request <= LIMIT; request += 1) {
      await listMembers(first.key);
    }
    expect((await listMembers(first.key)).status).toBe(429);
    expect((await listMembers(second.key)).status).toBe(200);
  });

  test('session counts separately', async () => {
    const email = uniqueEmail('session');
    const { userId, key } = await harness.addMember(email, ['user_administrator']);
    await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
    for (let request = 0; request <= LIMIT; request += 1) {
      await listMembers(key);
    }
    expect((await listMembers(key)).status).toBe(429);

    const signIn = await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD });
    expect(signIn.status).toBe(200);
    expect((await listMembers(signIn.body.token)).status).toBe(200);
  });

  test('unauthenticated routes are not counted', async () => {
    for (let request = 0; request <= LIMIT; request += 1) {
      expect((await harness.api.get('/v1/roles')).status).toBe(200);
    }
    expect((await harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)).status).toBe(401);
  });
});

describe('metrics', () => {
  test('request series by route template', async () => {
    const { key, userId } = await harness.addMember(uniqueEmail('metrics'), ['user_administrator']);
    const route = '/v1/accounts/{accountId}/environments/{environment}/users/{userId}';
    const labels = { method: 'GET', route, status: '200' };
    const before = (await harness.api.get('/metrics')).text;

    const member = await harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${userId}`).set('Authorization', `Bearer ${key}`);
    expect(member.status).toBe(200);
    const missing = await harness.api.get(`/no-such-route/${userId}`);
    expect(missing.status).toBe(404);

    const response = await harness.api.get('/metrics');
    expect(response.status).toBe(200);
    expect(response.type).toBe('text/plain');
    const after = response.text;
    expect(sample(after, 'lifecycle_http_requests_total', labels) - sample(before, 'lifecycle_http_requests_total', labels)).toBe(1);
    expect(sample(after, 'lifecycle_http_request_duration_seconds_count', labels) - sample(before, 'lifecycle_http_request_duration_seconds_count', labels)).toBe(1);
    expect(sample(after, 'lifecycle_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(after).toMatch(/^process_cpu_user_seconds_total /m);
    expect(after).toMatch(/^nodejs_heap_size_used_bytes /m);

    // Labels carry templates only: no account id, user id or email address.
    expect(after).not.toContain(harness.seed.accountId);
    expect(after).not.toContain(userId);
    expect(after).not.toContain('@');
  });
});

describe('readiness', () => {
  test('reports each dependency', async () => {
    const response = await harness.api.get('/readyz');
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: 'ok', checks: { database: 'ok', temporal: 'ok' } });
  });
});
