import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { hashPassword } from '../lib/passwords.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;
const PASSWORD = 'a sign-in password';

beforeAll(async () => {
  harness = await startHarness({ env: { LOGIN_RATE_LIMIT_PER_EMAIL: '3', LOGIN_RATE_LIMIT_PER_IP: '1000', SESSION_IDLE_TIMEOUT: '3s' } });
});

afterAll(async () => {
  await harness?.close();
});

async function memberWithPassword(roles: string[]): Promise<{ email: string; userId: string }> {
  const email = uniqueEmail('signin');
  const { userId } = await harness.addMember(email, roles);
  await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
  return { email, userId };
}

function login(email: string, password: string) {
  return harness.api.post('/v1/auth/login').send({ email, password });
}

describe('sessions', () => {
  test('login, me, logout', async () => {
    const { email, userId } = await memberWithPassword(['user_administrator']);
    const response = await login(email.toUpperCase(), PASSWORD);
    expect(response.status).toBe(200);
    expect(response.body.token).toMatch(/^ls_[A-Za-z0-9_-]{43}$/);
    expect(response.body.user).toEqual({ id: userId, email });
    expect(response.body.memberships).toEqual([
      { accountId: harness.seed.accountId, accountName: `Account ${harness.seed.accountId}`, environment: 'sandbox', status: 'active', roles: ['user_administrator'] },
    ]);
    const session = await harness.db('sessions').where({ user_id: userId }).first();
    expect(session.token_hash).not.toBe(response.body.token);

    const authorization = `Bearer ${response.body.token}`;
    const me = await harness.api.get('/v1/me').set('Authorization', authorization);
    expect(me.status).toBe(200);
    expect(me.body.memberships).toHaveLength(1);

    const users = await harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`).set('Authorization', authorization);
    expect(users.status).toBe(200);
    const elsewhere = await harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/production/users`).set('Authorization', authorization);
    expect(elsewhere.status).toBe(403);

    expect((await harness.api.post('/v1/auth/logout').set('Authorization', authorization)).status).toBe(204);
    expect((await harness.api.get('/v1/me').set('Authorization', authorization)).status).toBe(401);
  });

  test('unknown email and wrong password look alike', async () => {
    const { email } = await memberWithPassword(['customer_viewer']);
    const wrong = await login(email, 'not the password at all');
    const unknown = await login(uniqueEmail('nobody'), 'not the password at all');
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(unknown.body).toEqual(wrong.body);
  });

  test('login rate limit per email', async () => {
    const { email } = await memberWithPassword(['customer_viewer']);
    for (let attempt = 0; attempt < 3; attempt += 1) {
      expect((await login(email, 'wrong password here')).status).toBe(401);
    }
    const limited = await login(email, PASSWORD);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.body.error.code).toBe('rate_limited');
  });

  test('idle session expires', async () => {
    const { email } = await memberWithPassword(['customer_viewer']);
    const { token } = (await login(email, PASSWORD)).body;
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${token}`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${token}`)).status).toBe(401);
  });

  test('deactivated membership rejects session', async () => {
    const { email, userId } = await memberWithPassword(['user_administrator']);
    const { token } = (await login(email, PASSWORD)).body;
    await harness.db('memberships').where({ user_id: userId, environment_id: harness.seed.sandboxId }).update({ status: 'deactivated' });
    const response = await harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`).set('Authorization', `Bearer ${token}`);
    expect(response.status).toBe(401);
  });

  test('session cookie works from own origin', async () => {
    const { email } = await memberWithPassword(['customer_viewer']);
    const { token } = (await login(email, PASSWORD)).body;
    const cookie = `lc_session=${token}`;

    expect((await harness.api.get('/v1/me').set('Cookie', cookie)).status).toBe(200);
    const crossSite = await harness.api.post('/v1/auth/logout').set('Cookie', cookie).set('Origin', 'http://elsewhere.example');
    expect(crossSite.status).toBe(403);
    expect(crossSite.body.error.code).toBe('csrf_failed');
    const noOrigin = await harness.api.post('/v1/auth/logout').set('Cookie', cookie);
    expect(noOrigin.status).toBe(403);
    const sameOrigin = await harness.api.post('/v1/auth/logout').set('Cookie', cookie).set('Origin', 'http://127.0.0.1:3999');
    expect(sameOrigin.status).toBe(204);
    expect((await harness.api.get('/v1/me').set('Cookie', cookie)).status).toBe(401);
  });

  test('login form sets session cookie', async () => {
    const { email } = await memberWithPassword(['customer_viewer']);
    const form = harness.api.post('/v1/auth/login').type('form');

    const signedIn = await form.set('Origin', 'http://127.0.0.1:3999').send({ email, password: PASSWORD });
    expect(signedIn.status).toBe(200);
    expect(signedIn.text).toContain(`signed in as ${email}`);
    const cookie = (signedIn.headers['set-cookie'] as unknown as string[]).find((line) => line.startsWith('lc_session='))!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect((await harness.api.get('/v1/me').set('Cookie', cookie.split(';')[0]!)).status).toBe(200);

    const wrong = await harness.api.post('/v1/auth/login').type('form').set('Origin', 'http://127.0.0.1:3999').send({ email, password: 'not the password' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['content-type']).toContain('text/html');
    expect(wrong.text).toContain('incorrect');

    const crossSite = await harness.api.post('/v1/auth/login').type('form').set('Origin', 'http://elsewhere.example').send({ email, password: PASSWORD });
    expect(crossSite.status).toBe(403);
    expect(crossSite.headers['set-cookie']).toBeUndefined();
  });

  test('session cookie stays out of logs', async () => {
    const { email } = await memberWithPassword(['customer_viewer']);
    const signedIn = await harness.api.post('/v1/auth/login').type('form').set('Origin', 'http://127.0.0.1:3999').send({ email, password: PASSWORD });
    expect(signedIn.status).toBe(200);
    const token = /lc_session=([^;]+)/.exec((signedIn.headers['set-cookie'] as unknown as string[]).join('\n'))![1]!;
    expect(token).toMatch(/^ls_/);

    const requestLine = harness.logLines.find((line) => line.includes('"path":"/v1/auth/login"') && line.includes('"statusCode":200'));
    expect(requestLine).toBeDefined();
    expect(harness.logLines.filter((line) => line.includes(token))).toEqual([]);
  });
});
