import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { WorkflowNotFoundError } from '@temporalio/client';

import { emailChangeStartedSchema, emailChangedSchema } from '../api/routes/account-settings.js';
import { hashPassword } from '../lib/passwords.js';
import { emailChangeStateQuery, emailChangeWorkflowId, passwordResetWorkflowId } from '../workflows/account-settings.js';
import type { ReceivedMail } from './support/fake-sendgrid.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';

const PASSWORD = 'the sign-in password';
const CONFIRMATION_SUBJECT = 'Confirm your new sign-in email address';
const NOTICE_SUBJECT = 'A change of your sign-in email address was requested';
const HISTORY_DIR = fileURLToPath(new URL('./histories/', import.meta.url));

function tokenIn(mail: ReceivedMail, path: string): string {
  const text = mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
  const match = new RegExp(`https?://\\S+${path}\\?token=[A-Za-z0-9_%-]+`).exec(text);
  if (!match) {
    throw new Error(`no ${path} link in email "${mail.body.subject}"`);
  }
  return decodeURIComponent(new URL(match[0]).searchParams.get('token')!);
}

/** Helpers bound to one harness, because the expiry tests run their own with a short TTL. */
function helpers(harness: () => Harness) {
  async function signedInMember(): Promise<{ email: string; userId: string; session: string }> {
    const email = uniqueEmail('mover');
    const { userId } = await harness().addMember(email, ['customer_viewer']);
    await harness().db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
    const login = await harness().api.post('/v1/auth/login').send({ email, password: PASSWORD });
    expect(login.status).toBe(200);
    return { email, userId, session: login.body.token };
  }

  function requestChange(session: string, newEmail: string, currentPassword = PASSWORD) {
    return harness().api.post('/v1/me/email').set('Authorization', `Bearer ${session}`).send({ newEmail, currentPassword });
  }

  /** Waits for the `count`-th confirmation email to `newEmail` and returns its token. */
  async function confirmationToken(newEmail: string, count = 1): Promise<string> {
    const sendgrid = harness().sendgrid;
    const confirmations = () => sendgrid.deliveredTo(newEmail).filter((mail) => mail.body.subject === CONFIRMATION_SUBJECT);
    await sendgrid.waitFor(() => confirmations().length >= count);
    return tokenIn(confirmations()[count - 1]!, '/email-changes/confirm');
  }

  function confirm(token: string) {
    return harness().api.post('/v1/email-changes/confirm').send({ token });
  }

  async function emailOf(userId: string): Promise<string> {
    return (await harness().db('users').where({ id: userId }).first('email')).email;
  }

  return { signedInMember, requestChange, confirmationToken, confirm, emailOf };
}

describe('email change', () => {
  let harness: Harness;
  const { signedInMember, requestChange, confirmationToken, confirm, emailOf } = helpers(() => harness);

  beforeAll(async () => {
    harness = await startHarness({ env: { LOGIN_RATE_LIMIT_PER_IP: '1000' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('confirm switches sign-in email', async () => {
    const { email, userId, session } = await signedInMember();
    const newEmail = uniqueEmail('moved');

    const requested = await requestChange(session, newEmail);
    expect(requested.status).toBe(202);
    expect(requested.body).toEqual({ status: 'pending', newEmail, linkExpiresInSeconds: 24 * 3600 });
    expect(emailChangeStartedSchema.safeParse(requested.body).error).toBeUndefined();

    const token = await confirmationToken(newEmail);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const [notice] = harness.sendgrid.deliveredTo(email);
    expect(notice!.body.subject).toBe(NOTICE_SUBJECT);
    const noticeText = notice!.body.content.find((part) => part.type === 'text/plain')!.value;
    expect(noticeText).toContain(newEmail);
    expect(noticeText).not.toContain('token=');

    const handle = harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId));
    expect((await handle.query(emailChangeStateQuery)).phase).toBe('pending');

    // Opening the page twice changes nothing and keeps the link usable.
    for (let opening = 0; opening < 2; opening += 1) {
      const page = await harness.api.get(`/email-changes/confirm?token=${encodeURIComponent(token)}`);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toContain('text/html');
      expect(page.headers['cache-control']).toBe('no-store');
      expect(page.text).toContain('<form method="post" action="/v1/email-changes/confirm">');
      expect(page.text).toContain(newEmail);
    }
    expect(await emailOf(userId)).toBe(email);

    const confirmed = await confirm(token);
    expect(confirmed.status).toBe(200);
    expect(confirmed.body).toEqual({ userId, email: newEmail });
    expect(emailChangedSchema.safeParse(confirmed.body).error).toBeUndefined();
    expect(await emailOf(userId)).toBe(newEmail);
    expect(await handle.result()).toMatchObject({ outcome: 'confirmed' });

    expect((await harness.api.post('/v1/auth/login').send({ email: newEmail, password: PASSWORD })).status).toBe(200);
    expect((await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD })).status).toBe(401);
    // The session that asked for the change keeps working.
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${session}`)).body.user.email).toBe(newEmail);

    const again = await confirm(token);
    expect(again.status).toBe(410);
    expect(again.body.error.code).toBe('email_change_link_invalid');
    expect((await harness.api.get(`/email-changes/confirm?token=${encodeURIComponent(token)}`)).status).toBe(410);

    const actions = await harness.db('audit_events').where({ target_user_id: userId }).whereLike('action', 'email_change.%').orderBy('id').pluck('action');
    expect(actions).toEqual(['email_change.requested', 'email_change.confirmed']);

    // Neither the token nor the password reaches workflow history, the logs or an API response.
    const history = JSON.stringify(await handle.fetchHistory());
    const logs = harness.logLines.join('\n');
    for (const secret of [token, PASSWORD]) {
      expect(history).not.toContain(secret);
      expect(logs).not.toContain(secret);
      expect(JSON.stringify(requested.body)).not.toContain(secret);
      expect(JSON.stringify(confirmed.body)).not.toContain(secret);
    }
  });

  test('form confirmation shows a page', async () => {
    const { userId, session } = await signedInMember();
    const newEmail = uniqueEmail('formmoved');
    expect((await requestChange(session, newEmail)).status).toBe(202);
    const token = await confirmationToken(newEmail);

    const confirmed = await harness.api.post('/v1/email-changes/confirm').type('form').send({ token });
    expect(confirmed.status).toBe(200);
    expect(confirmed.headers['content-type']).toContain('text/html');
    expect(confirmed.text).toContain(`You now sign in with <strong>${newEmail}</strong>`);
    expect(await emailOf(userId)).toBe(newEmail);

    const again = await harness.api.post('/v1/email-changes/confirm').type('form').send({ token });
    expect(again.status).toBe(410);
    expect(again.text).toContain('no longer works');
  });

  test('taken address conflicts and changes nothing', async () => {
    const { email, userId, session } = await signedInMember();
    const contested = uniqueEmail('contested');
    expect((await requestChange(session, contested)).status).toBe(202);
    const token = await confirmationToken(contested);

    // Someone else gets the address between the request and the confirmation.
    const other = await harness.addMember(contested, ['customer_viewer']);

    const conflict = await confirm(token);
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe('email_taken');
    expect(await emailOf(userId)).toBe(email);
    expect(await emailOf(other.userId)).toBe(contested);
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${session}`)).status).toBe(200);

    const handle = harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId));
    expect(await handle.result()).toMatchObject({ outcome: 'failed' });
    const change = await harness.db('email_changes').where({ user_id: userId }).first();
    expect(change).toMatchObject({ status: 'failed', token_hash: null });

    expect((await confirm(token)).status).toBe(410);
    expect(await emailOf(userId)).toBe(email);
  });

  test('second request supersedes the first', async () => {
    const { email, userId, session } = await signedInMember();
    const first = uniqueEmail('first');
    const second = uniqueEmail('second');

    expect((await requestChange(session, first)).status).toBe(202);
    const firstToken = await confirmationToken(first);
    expect((await requestChange(session, second)).status).toBe(202);
    const secondToken = await confirmationToken(second);

    const stale = await confirm(firstToken);
    expect(stale.status).toBe(410);
    expect(await emailOf(userId)).toBe(email);

    expect((await confirm(secondToken)).status).toBe(200);
    expect(await emailOf(userId)).toBe(second);

    const rows = await harness.db('email_changes').where({ user_id: userId }).orderBy('created_at');
    expect(rows.map((row) => [row.new_email, row.status])).toEqual([
      [first, 'superseded'],
      [second, 'confirmed'],
    ]);
    // Each request is one run of the same workflow: the first continued as new into the second.
    expect(rows[0].workflow_id).toBe(rows[1].workflow_id);
    const firstRun = await harness.temporal.workflow.getHandle(rows[0].workflow_id, rows[0].workflow_run_id).describe();
    expect(firstRun.status.name).toBe('CONTINUED_AS_NEW');
    expect(await harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId)).result()).toMatchObject({
      outcome: 'confirmed',
      emailChangeId: rows[1].id,
    });

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    const actions = await harness.db('audit_events').where({ target_user_id: userId }).whereLike('action', 'email_change.%').orderBy('id').pluck('action');
    expect(actions).toEqual(['email_change.requested', 'email_change.superseded', 'email_change.requested', 'email_change.confirmed']);
  });

  test('password change cancels pending change', async () => {
    const { email, userId, session } = await signedInMember();
    const newEmail = uniqueEmail('cancelled');
    expect((await requestChange(session, newEmail)).status).toBe(202);
    const token = await confirmationToken(newEmail);

    const changed = await harness.api
      .post('/v1/me/password')
      .set('Authorization', `Bearer ${session}`)
      .send({ currentPassword: PASSWORD, newPassword: 'a brand new password' });
    expect(changed.status).toBe(200);

    expect((await confirm(token)).status).toBe(410);
    expect(await emailOf(userId)).toBe(email);
    expect(await harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId)).result()).toMatchObject({ outcome: 'cancelled' });
  });

  test('confirmed change kills reset link', async () => {
    const { email, userId, session } = await signedInMember();
    expect((await harness.api.post('/v1/auth/password-reset').send({ email })).status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).some((mail) => mail.body.subject === 'Reset your password'));
    const resetMail = harness.sendgrid.deliveredTo(email).find((mail) => mail.body.subject === 'Reset your password')!;
    const resetToken = tokenIn(resetMail, '/password-reset');

    const newEmail = uniqueEmail('resetmoved');
    expect((await requestChange(session, newEmail)).status).toBe(202);
    expect((await confirm(await confirmationToken(newEmail))).status).toBe(200);

    const reset = await harness.api.post('/v1/auth/password-reset/confirm').send({ token: resetToken, password: 'a password from the old inbox' });
    expect(reset.status).toBe(410);
    expect(await harness.temporal.workflow.getHandle(passwordResetWorkflowId(userId)).result()).toMatchObject({ outcome: 'superseded' });
  });

  test('bad requests start nothing', async () => {
    const { email, userId, session } = await signedInMember();
    const newEmail = uniqueEmail('never');

    const wrongPassword = await requestChange(session, newEmail, 'not the password at all');
    expect(wrongPassword.status).toBe(403);
    expect(wrongPassword.body.error.code).toBe('current_password_incorrect');

    const sameAddress = await requestChange(session, ` ${email.toUpperCase()} `);
    expect(sameAddress.status).toBe(400);
    expect(sameAddress.body.error.details).toEqual([{ field: 'body.newEmail', rule: 'must differ from the current email address' }]);

    const invalid = await requestChange(session, 'not an address');
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.details).toEqual([{ field: 'body.newEmail', rule: 'must be a valid email address' }]);

    const withApiKey = await harness.api
      .post('/v1/me/email')
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ newEmail, currentPassword: PASSWORD });
    expect(withApiKey.status).toBe(403);

    await expect(harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId)).describe()).rejects.toThrow(WorkflowNotFoundError);
    expect(await harness.db('email_changes').where({ user_id: userId })).toHaveLength(0);
    expect(harness.sendgrid.deliveredTo(newEmail)).toHaveLength(0);
  });

  test('unknown and malformed tokens are gone', async () => {
    for (const token of ['A'.repeat(43), 'short', '']) {
      const response = await confirm(token);
      expect(response.status).toBe(token === '' ? 400 : 410);
      const page = await harness.api.get(`/email-changes/confirm?token=${encodeURIComponent(token)}`);
      expect(page.status).toBe(410);
    }
  });
});

describe('email change expiry', () => {
  let harness: Harness;
  const { signedInMember, requestChange, confirmationToken, confirm, emailOf } = helpers(() => harness);

  beforeAll(async () => {
    harness = await startHarness({ env: { EMAIL_CHANGE_TTL: '3s' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('expired link is gone', async () => {
    const { email, userId, session } = await signedInMember();
    const newEmail = uniqueEmail('late');
    expect((await requestChange(session, newEmail)).status).toBe(202);
    const token = await confirmationToken(newEmail);

    expect(await harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId)).result()).toMatchObject({ outcome: 'expired' });

    const late = await confirm(token);
    expect(late.status).toBe(410);
    expect(late.body.error.code).toBe('email_change_link_invalid');
    expect((await harness.api.get(`/email-changes/confirm?token=${encodeURIComponent(token)}`)).status).toBe(410);
    expect(await emailOf(userId)).toBe(email);
    const actions = await harness.db('audit_events').where({ target_user_id: userId }).whereLike('action', 'email_change.%').orderBy('id').pluck('action');
    expect(actions).toEqual(['email_change.requested', 'email_change.expired']);
  });
});

// Records histories for test/replay.test.ts: RECORD_HISTORIES=1 npm test -- test/email-change.test.ts
(process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record email change histories', () => {
  let harness: Harness;
  const { signedInMember, requestChange, confirmationToken, confirm } = helpers(() => harness);

  beforeAll(async () => {
    harness = await startHarness({ env: { EMAIL_CHANGE_TTL: '4s' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  async function save(name: string, workflowId: string, runId: string): Promise<void> {
    const json = execFileSync(
      process.env.LIFECYCLE_TEST_TEMPORAL_CLI!,
      ['workflow', 'show', '--workflow-id', workflowId, '--run-id', runId, '--output', 'json', '--address', harness.config.temporal.address],
      { encoding: 'utf8' },
    );
    await writeFile(`${HISTORY_DIR}${name}.json`, json.endsWith('\n') ? json : `${json}\n`);
  }

  async function runsOf(userId: string): Promise<{ workflow_id: string; workflow_run_id: string }[]> {
    return harness.db('email_changes').where({ user_id: userId }).orderBy('created_at').select('workflow_id', 'workflow_run_id');
  }

  test('record confirmed email change', async () => {
    const { userId, session } = await signedInMember();
    const newEmail = uniqueEmail('recorded');
    await requestChange(session, newEmail).expect(202);
    await confirm(await confirmationToken(newEmail)).expect(200);
    await harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId)).result();
    const [run] = await runsOf(userId);
    await save('email-change-confirmed', run!.workflow_id, run!.workflow_run_id);
  });

  test('record superseded email change', async () => {
    const { userId, session } = await signedInMember();
    const first = uniqueEmail('recfirst');
    await requestChange(session, first).expect(202);
    await confirmationToken(first);
    await requestChange(session, uniqueEmail('recsecond')).expect(202);
    await harness.temporal.workflow.getHandle(emailChangeWorkflowId(userId)).result();
    const [superseded, expired] = await runsOf(userId);
    await save('email-change-superseded', superseded!.workflow_id, superseded!.workflow_run_id);
    await save('email-change-expired', expired!.workflow_id, expired!.workflow_run_id);
  });

  test('record failed email change', async () => {
    const { userId, session } = await signedInMember();
    const contested = uniqueEmail('rectaken');
    await requestChange(session, contested).expect(202);
    const token = await confirmationToken(contested);
    await harness.addMember(contested, ['customer_viewer']);
    await confirm(token).expect(409);
    await eventually(async () => {
      const [run] = await runsOf(userId);
      const description = await harness.temporal.workflow.getHandle(run!.workflow_id, run!.workflow_run_id).describe();
      return description.status.name === 'COMPLETED' ? true : undefined;
    });
    const [run] = await runsOf(userId);
    await save('email-change-failed', run!.workflow_id, run!.workflow_run_id);
  });
});
