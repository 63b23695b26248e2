import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { WorkflowNotFoundError } from '@temporalio/client';

import { passwordResetAcceptedSchema, passwordResetDoneSchema } from '../api/routes/account-settings.js';
import { hashPassword } from '../lib/passwords.js';
import { passwordResetStateQuery, passwordResetWorkflowId } from '../workflows/account-settings.js';
import type { ReceivedMail } from './support/fake-sendgrid.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';

const PASSWORD = 'the forgotten password';
const NEW_PASSWORD = 'the remembered password';
const REQUESTS_PER_EMAIL = 4;
const HISTORY_DIR = fileURLToPath(new URL('./histories/', import.meta.url));

function resetTokenIn(mail: ReceivedMail): string {
  const text = mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
  const match = /https?:\/\/\S+\/password-reset\?token=[A-Za-z0-9_%-]+/.exec(text);
  if (!match) {
    throw new Error(`no password reset link in email "${mail.body.subject}"`);
  }
  return decodeURIComponent(new URL(match[0]).searchParams.get('token')!);
}

/** Helpers bound to one harness, because the expiry tests run their own with a short TTL. */
function helpers(harness: () => Harness) {
  async function memberWithPassword(): Promise<{ email: string; userId: string }> {
    const email = uniqueEmail('forgetful');
    const { userId } = await harness().addMember(email, ['customer_viewer']);
    await harness().db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
    return { email, userId };
  }

  function requestReset(email: string) {
    return harness().api.post('/v1/auth/password-reset').send({ email });
  }

  /** Waits for the `count`-th reset email to `email` and returns its token. */
  async function resetToken(email: string, count = 1): Promise<string> {
    const sendgrid = harness().sendgrid;
    await sendgrid.waitFor(() => sendgrid.deliveredTo(email).length >= count);
    return resetTokenIn(sendgrid.deliveredTo(email)[count - 1]!);
  }

  function completeReset(token: string, password: string) {
    return harness().api.post('/v1/auth/password-reset/confirm').send({ token, password });
  }

  function login(email: string, password: string) {
    return harness().api.post('/v1/auth/login').send({ email, password });
  }

  async function storedHash(userId: string): Promise<string> {
    return (await harness().db('users').where({ id: userId }).first('password_hash')).password_hash;
  }

  return { memberWithPassword, requestReset, resetToken, completeReset, login, storedHash };
}

describe('password reset', () => {
  let harness: Harness;
  const { memberWithPassword, requestReset, resetToken, completeReset, login, storedHash } = helpers(() => harness);

  beforeAll(async () => {
    harness = await startHarness({
      env: { LOGIN_RATE_LIMIT_PER_EMAIL: String(REQUESTS_PER_EMAIL), LOGIN_RATE_LIMIT_PER_IP: '1000' },
    });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('unknown and known addresses look alike', async () => {
    const { email, userId } = await memberWithPassword();
    const unknown = uniqueEmail('nobody');
    const invited = uniqueEmail('invited');
    const invitedUser = await harness.addMember(invited, ['customer_viewer']);
    const skippedBefore = harness.logLines.filter((line) => line.includes('no account or no password')).length;

    const forUnknown = await requestReset(unknown);
    const forInvited = await requestReset(invited);
    const forKnown = await requestReset(email);
    for (const response of [forUnknown, forInvited, forKnown]) {
      expect(response.status).toBe(202);
      expect(response.body).toEqual(forKnown.body);
      expect(response.headers['content-type']).toBe(forKnown.headers['content-type']);
    }
    expect(passwordResetAcceptedSchema.safeParse(forKnown.body).error).toBeUndefined();

    await resetToken(email);
    // Both requests without a reset were handled and sent nothing.
    await eventually(async () => {
      const skipped = harness.logLines.filter((line) => line.includes('no account or no password')).length;
      return skipped - skippedBefore >= 2 ? true : undefined;
    });
    expect(harness.sendgrid.deliveredTo(unknown)).toHaveLength(0);
    expect(harness.sendgrid.deliveredTo(invited)).toHaveLength(0);
    await expect(harness.temporal.workflow.getHandle(passwordResetWorkflowId(invitedUser.userId)).describe()).rejects.toThrow(
      WorkflowNotFoundError,
    );
    expect(await harness.db('password_resets').where({ user_id: invitedUser.userId })).toHaveLength(0);
    expect(await harness.db('password_resets').where({ user_id: userId })).toHaveLength(1);
    expect(harness.logLines.join('\n')).not.toContain(unknown);
  });

  test('link works once and ends sessions', async () => {
    const { email, userId } = await memberWithPassword();
    const sessions = [(await login(email, PASSWORD)).body.token, (await login(email, PASSWORD)).body.token];

    expect((await requestReset(email)).status).toBe(202);
    const token = await resetToken(email);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const hashBefore = await storedHash(userId);

    // Opening the page twice changes nothing and keeps the link usable.
    for (let opening = 0; opening < 2; opening += 1) {
      const page = await harness.api.get(`/password-reset?token=${encodeURIComponent(token)}`);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toContain('text/html');
      expect(page.headers['cache-control']).toBe('no-store');
      expect(page.text).toContain('<form method="post" action="/v1/auth/password-reset/confirm">');
      expect(page.text).toContain('name="password"');
    }
    expect(await storedHash(userId)).toBe(hashBefore);

    const done = await completeReset(token, NEW_PASSWORD);
    expect(done.status).toBe(200);
    expect(done.body).toEqual({ sessionsRevoked: 2 });
    expect(passwordResetDoneSchema.safeParse(done.body).error).toBeUndefined();

    for (const session of sessions) {
      expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${session}`)).status).toBe(401);
    }
    expect((await login(email, PASSWORD)).status).toBe(401);
    expect((await login(email, NEW_PASSWORD)).status).toBe(200);

    const again = await completeReset(token, 'yet another password');
    expect(again.status).toBe(410);
    expect(again.body.error.code).toBe('password_reset_link_invalid');
    expect((await harness.api.get(`/password-reset?token=${encodeURIComponent(token)}`)).status).toBe(410);

    const handle = harness.temporal.workflow.getHandle(passwordResetWorkflowId(userId));
    expect(await handle.result()).toMatchObject({ outcome: 'used', requests: 1 });
    const actions = await harness.db('audit_events').where({ target_user_id: userId }).whereLike('action', 'password_reset.%').orderBy('id').pluck('action');
    expect(actions).toEqual(['password_reset.requested', 'password_reset.completed']);

    // Neither the token nor a password reaches workflow history, the logs or an API response.
    const history = JSON.stringify(await handle.fetchHistory());
    const logs = harness.logLines.join('\n');
    for (const secret of [token, NEW_PASSWORD, PASSWORD]) {
      expect(history).not.toContain(secret);
      expect(logs).not.toContain(secret);
      expect(JSON.stringify(done.body)).not.toContain(secret);
    }
  });

  test('bad password keeps link usable', async () => {
    const { email, userId } = await memberWithPassword();
    expect((await requestReset(email)).status).toBe(202);
    const token = await resetToken(email);
    const hashBefore = await storedHash(userId);

    const tooShort = await completeReset(token, 'short');
    expect(tooShort.status).toBe(400);
    expect(tooShort.body.error.details).toEqual([{ field: 'body.password', rule: 'must be at least 12 characters' }]);
    const sameAsEmail = await completeReset(token, email.toUpperCase());
    expect(sameAsEmail.status).toBe(400);
    expect(sameAsEmail.body.error.details).toEqual([{ field: 'body.password', rule: 'must not be the email address' }]);
    expect(await storedHash(userId)).toBe(hashBefore);

    expect((await completeReset(token, NEW_PASSWORD)).status).toBe(200);
  });

  test('second request kills first link', async () => {
    const { email, userId } = await memberWithPassword();
    expect((await requestReset(email)).status).toBe(202);
    const firstToken = await resetToken(email, 1);
    expect((await requestReset(email)).status).toBe(202);
    const secondToken = await resetToken(email, 2);
    expect(secondToken).not.toBe(firstToken);

    const stale = await completeReset(firstToken, NEW_PASSWORD);
    expect(stale.status).toBe(410);
    expect((await login(email, PASSWORD)).status).toBe(200);

    expect((await completeReset(secondToken, NEW_PASSWORD)).status).toBe(200);
    const rows = await harness.db('password_resets').where({ user_id: userId }).orderBy('created_at').pluck('status');
    expect(rows).toEqual(['superseded', 'used']);
    expect(await harness.temporal.workflow.getHandle(passwordResetWorkflowId(userId)).result()).toMatchObject({
      outcome: 'used',
      requests: 2,
    });
  });

  test('form reset shows pages', async () => {
    const { email } = await memberWithPassword();
    expect((await requestReset(email)).status).toBe(202);
    const token = await resetToken(email);

    const tooShort = await harness.api.post('/v1/auth/password-reset/confirm').type('form').send({ token, password: 'short' });
    expect(tooShort.status).toBe(400);
    expect(tooShort.headers['content-type']).toContain('text/html');
    expect(tooShort.text).toContain('at least 12 characters');
    expect(tooShort.text).toContain('<form');

    const done = await harness.api.post('/v1/auth/password-reset/confirm').type('form').send({ token, password: NEW_PASSWORD });
    expect(done.status).toBe(200);
    expect(done.text).toContain('Password changed');

    const again = await harness.api.post('/v1/auth/password-reset/confirm').type('form').send({ token, password: NEW_PASSWORD });
    expect(again.status).toBe(410);
    expect(again.text).toContain('no longer works');
  });

  test('reset requests rate limited', async () => {
    const { email, userId } = await memberWithPassword();
    const unknown = uniqueEmail('nobody');
    for (const address of [email, unknown]) {
      for (let attempt = 0; attempt < REQUESTS_PER_EMAIL; attempt += 1) {
        expect((await requestReset(address)).status).toBe(202);
      }
      const limited = await requestReset(address.toUpperCase());
      expect(limited.status).toBe(429);
      expect(limited.body.error.code).toBe('rate_limited');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    }
    // However the requests of a burst are grouped into links, only the newest link stays pending.
    const handle = harness.temporal.workflow.getHandle(passwordResetWorkflowId(userId));
    await eventually(async () => {
      const state = await handle.query(passwordResetStateQuery);
      return state.requests === REQUESTS_PER_EMAIL && state.phase === 'pending' ? state : undefined;
    });
    expect(await harness.db('password_resets').where({ user_id: userId, status: 'pending' })).toHaveLength(1);
  });
});

describe('password reset expiry', () => {
  let harness: Harness;
  const { memberWithPassword, requestReset, resetToken, completeReset, storedHash } = helpers(() => harness);

  beforeAll(async () => {
    harness = await startHarness({ env: { PASSWORD_RESET_TTL: '3s' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('expired link is gone', async () => {
    const { email, userId } = await memberWithPassword();
    expect((await requestReset(email)).status).toBe(202);
    const token = await resetToken(email);
    const hashBefore = await storedHash(userId);

    expect(await harness.temporal.workflow.getHandle(passwordResetWorkflowId(userId)).result()).toMatchObject({ outcome: 'expired' });

    const late = await completeReset(token, NEW_PASSWORD);
    expect(late.status).toBe(410);
    expect(late.body.error.code).toBe('password_reset_link_invalid');
    expect((await harness.api.get(`/password-reset?token=${encodeURIComponent(token)}`)).status).toBe(410);
    expect(await storedHash(userId)).toBe(hashBefore);
  });
});

// Records histories for test/replay.test.ts: RECORD_HISTORIES=1 npm test -- test/password-reset.test.ts
(process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record password reset histories', () => {
  let harness: Harness;
  const { memberWithPassword, requestReset, resetToken, completeReset } = helpers(() => harness);

  beforeAll(async () => {
    harness = await startHarness({ env: { PASSWORD_RESET_TTL: '4s' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  async function save(name: string, userId: string): Promise<void> {
    const handle = harness.temporal.workflow.getHandle(passwordResetWorkflowId(userId));
    await handle.result();
    const json = execFileSync(
      process.env.LIFECYCLE_TEST_TEMPORAL_CLI!,
      [
        'workflow', 'show', '--workflow-id', handle.workflowId, '--run-id', (await handle.describe()).runId,
        '--output', 'json', '--address', harness.config.temporal.address,
      ],
      { encoding: 'utf8' },
    );
    await writeFile(`${HISTORY_DIR}${name}.json`, json.endsWith('\n') ? json : `${json}\n`);
  }

  test('record replaced then used reset', async () => {
    const { email, userId } = await memberWithPassword();
    await requestReset(email).expect(202);
    await resetToken(email, 1);
    await requestReset(email).expect(202);
    await completeReset(await resetToken(email, 2), NEW_PASSWORD).expect(200);
    await save('password-reset-replaced-used', userId);
  });

  test('record expired reset', async () => {
    const { email, userId } = await memberWithPassword();
    await requestReset(email).expect(202);
    await resetToken(email);
    await save('password-reset-expired', userId);
  });
});
