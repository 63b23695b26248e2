import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createDocument } from 'zod-openapi';

import { accountSettingsPaths, accountSettingsSecuritySchemes } from '../api/openapi-account-settings.js';
import { errorSchema } from '../api/schemas.js';
import { passwordChangedSchema } from '../api/routes/account-settings.js';
import { hashPassword } from '../lib/passwords.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;
const PASSWORD = 'the first password';
const NEW_PASSWORD = 'a second, longer password';
const ATTEMPTS_PER_PERSON = 6;

beforeAll(async () => {
  harness = await startHarness({
    env: { LOGIN_RATE_LIMIT_PER_EMAIL: String(ATTEMPTS_PER_PERSON), LOGIN_RATE_LIMIT_PER_IP: '1000' },
  });
});

afterAll(async () => {
  await harness?.close();
});

async function memberWithPassword(): Promise<{ email: string; userId: string }> {
  const email = uniqueEmail('settings');
  const { userId } = await harness.addMember(email, ['customer_viewer']);
  await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
  return { email, userId };
}

async function login(email: string, password: string) {
  return harness.api.post('/v1/auth/login').send({ email, password });
}

async function sessionToken(email: string, password = PASSWORD): Promise<string> {
  const response = await login(email, password);
  expect(response.status).toBe(200);
  return response.body.token;
}

function changePassword(token: string, body: object) {
  return harness.api.post('/v1/me/password').set('Authorization', `Bearer ${token}`).send(body);
}

async function storedHash(userId: string): Promise<string> {
  return (await harness.db('users').where({ id: userId }).first('password_hash')).password_hash;
}

describe('password change', () => {
  test('change ends other sessions', async () => {
    const { email, userId } = await memberWithPassword();
    const current = await sessionToken(email);
    const other = await sessionToken(email);

    const response = await changePassword(current, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ sessionsRevoked: 1 });
    expect(passwordChangedSchema.safeParse(response.body).error).toBeUndefined();

    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${current}`)).status).toBe(200);
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${other}`)).status).toBe(401);
    const revoked = await harness.db('sessions').where({ user_id: userId }).whereNotNull('revoked_at').pluck('revoked_reason');
    expect(revoked).toEqual(['password_changed']);

    expect((await login(email, PASSWORD)).status).toBe(401);
    expect((await login(email, NEW_PASSWORD)).status).toBe(200);

    const events = await harness.db('audit_events').where({ target_user_id: userId, action: 'user.password_changed' });
    expect(events).toHaveLength(1);
    expect(events[0].actor_user_id).toBe(userId);
    expect(events[0].details).toMatchObject({ sessionsRevoked: 1 });

    const logs = harness.logLines.join('\n');
    for (const secret of [PASSWORD, NEW_PASSWORD]) {
      expect(logs).not.toContain(secret);
      expect(JSON.stringify(response.body)).not.toContain(secret);
      expect(JSON.stringify(events)).not.toContain(secret);
    }
    expect(JSON.stringify(events)).not.toContain('argon2');
  });

  test('wrong current password rejected', async () => {
    const { email, userId } = await memberWithPassword();
    const current = await sessionToken(email);
    const other = await sessionToken(email);
    const hashBefore = await storedHash(userId);

    const response = await changePassword(current, { currentPassword: 'not the password at all', newPassword: NEW_PASSWORD });
    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('current_password_incorrect');
    expect(response.body.error.message).toBe('The current password is incorrect.');
    expect(errorSchema.safeParse(response.body).error).toBeUndefined();

    expect(await storedHash(userId)).toBe(hashBefore);
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${other}`)).status).toBe(200);
    expect(await harness.db('audit_events').where({ target_user_id: userId, action: 'user.password_changed' })).toHaveLength(0);
  });

  test('bad new password rejected', async () => {
    const { email, userId } = await memberWithPassword();
    const current = await sessionToken(email);
    const other = await sessionToken(email);
    const hashBefore = await storedHash(userId);

    const cases: { body: object; field: string; rule: string }[] = [
      { body: { currentPassword: PASSWORD, newPassword: 'too short' }, field: 'body.newPassword', rule: 'must be at least 12 characters' },
      { body: { currentPassword: PASSWORD, newPassword: 'x'.repeat(129) }, field: 'body.newPassword', rule: 'must be at most 128 characters' },
      { body: { currentPassword: PASSWORD, newPassword: email.toUpperCase() }, field: 'body.newPassword', rule: 'must not be the email address' },
      { body: { currentPassword: PASSWORD, newPassword: PASSWORD }, field: 'body.newPassword', rule: 'must differ from the current password' },
      { body: { currentPassword: PASSWORD }, field: 'body.newPassword', rule: 'is required' },
    ];
    for (const { body, field, rule } of cases) {
      const response = await changePassword(current, body);
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('validation_failed');
      expect(response.body.error.details).toEqual([{ field, rule }]);
    }

    expect(await storedHash(userId)).toBe(hashBefore);
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${other}`)).status).toBe(200);
  });

  test('only sessions may change passwords', async () => {
    const withApiKey = await harness.api
      .post('/v1/me/password')
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    expect(withApiKey.status).toBe(403);
    expect(withApiKey.body.error.code).toBe('forbidden');

    const anonymous = await harness.api.post('/v1/me/password').send({ currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    expect(anonymous.status).toBe(401);
  });

  test('password attempts rate limited', async () => {
    const { email, userId } = await memberWithPassword();
    const current = await sessionToken(email);
    const hashBefore = await storedHash(userId);

    for (let attempt = 0; attempt < ATTEMPTS_PER_PERSON; attempt += 1) {
      const wrong = await changePassword(current, { currentPassword: `wrong guess number ${attempt}`, newPassword: NEW_PASSWORD });
      expect(wrong.status).toBe(403);
    }
    const limited = await changePassword(current, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(await storedHash(userId)).toBe(hashBefore);
  });
});

describe('account settings OpenAPI paths', () => {
  test('paths build a document', () => {
    const document = createDocument({
      openapi: '3.1.0',
      info: { title: 'Account settings', version: '1.0.0' },
      paths: accountSettingsPaths,
      components: { securitySchemes: accountSettingsSecuritySchemes },
    });
    expect(Object.keys(document.paths ?? {})).toEqual([
      '/v1/me/password',
      '/v1/me/email',
      '/email-changes/confirm',
      '/v1/email-changes/confirm',
      '/v1/auth/password-reset',
      '/password-reset',
      '/v1/auth/password-reset/confirm',
    ]);
    const passwordChange = document.components?.schemas?.PasswordChangeRequest as { required?: string[] } | undefined;
    expect(passwordChange?.required).toEqual(['currentPassword', 'newPassword']);
    expect(document.paths?.['/v1/me/password']?.post?.security).toEqual([{ sessionToken: [] }]);
  });
});
