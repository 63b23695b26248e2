import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness({
    env: { INVITE_TTL: '6s', INVITE_REMINDER_AFTER: '2s', INVITE_RESEND_COOLDOWN: '1s', INVITE_MAX_RESENDS: '2' },
  });
});

afterAll(async () => {
  await harness?.close();
});

function usersPath(): string {
  return `/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`;
}

function asAdmin<T extends { set(name: string, value: string): T }>(request: T): T {
  return request.set('Authorization', `Bearer ${harness.seed.adminKey}`);
}

async function invite(email: string) {
  return asAdmin(harness.api.post(usersPath())).send({ email, roles: ['subscription_viewer'] });
}

async function membershipStatus(email: string): Promise<string | undefined> {
  const row = await harness.db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .where({ 'users.email_normalized': email, 'memberships.environment_id': harness.seed.sandboxId })
    .first('memberships.status');
  return row?.status;
}

async function tableCounts() {
  const counts: Record<string, number> = {};
  for (const table of ['users', 'memberships', 'invitations', 'invitation_emails', 'audit_events']) {
    const [row] = await harness.db(table).count({ count: '*' });
    counts[table] = Number(row?.count);
  }
  return counts;
}

describe('invitation timers', () => {
  test('reminder once, then expiry', async () => {
    const email = uniqueEmail('late');
    const response = await invite(email);
    expect(response.status).toBe(202);
    const handle = harness.temporal.workflow.getHandle(response.body.invitation.workflowId);

    const result = await handle.result();
    expect(result.outcome).toBe('expired');

    const mails = harness.sendgrid.deliveredTo(email);
    expect(mails.map((mail) => mail.body.categories)).toEqual([['invitation-invitation'], ['invitation-reminder']]);
    expect(mails[1]!.body.subject).toContain('Reminder');
    // The reminder repeats the link it reminds of.
    expect(tokenIn(mails[1]!)).toBe(tokenIn(mails[0]!));

    expect(await membershipStatus(email)).toBe('expired');
    const before = await tableCounts();
    const accept = await harness.api.post('/v1/invitations/accept').send({ token: tokenIn(mails[0]!), password: 'too late for this one' });
    expect(accept.status).toBe(410);
    expect(await tableCounts()).toEqual(before);

    const actions = await harness.db('audit_events').where({ workflow_id: handle.workflowId }).orderBy('id').pluck('action');
    expect(actions).toEqual(['invitation.created', 'invitation.reminder_sent', 'invitation.expired']);

    // An ended invitation frees the workflow id: the same person can be invited again.
    const again = await invite(email);
    expect(again.status).toBe(202);
    expect(again.body.invitation.workflowId).toBe(handle.workflowId);
    expect(again.body.invitation.id).not.toBe(response.body.invitation.id);
    expect(await membershipStatus(email)).toBe('invited');
    await asAdmin(harness.api.post(`${usersPath()}/${again.body.id}/invitation/revoke`)).expect(200);
  });

  test('resend replaces the link', async () => {
    const email = uniqueEmail('resend');
    const response = await invite(email);
    expect(response.status).toBe(202);
    const userId = response.body.id;
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const oldToken = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const resent = await asAdmin(harness.api.post(`${usersPath()}/${userId}/invitation/resend`));
    expect(resent.status).toBe(200);
    expect(resent.body.invitation.resendCount).toBe(1);
    expect(Date.parse(resent.body.invitation.expiresAt)).toBeGreaterThan(Date.parse(response.body.invitation.expiresAt));

    const tooSoon = await asAdmin(harness.api.post(`${usersPath()}/${userId}/invitation/resend`));
    expect(tooSoon.status).toBe(429);
    expect(tooSoon.body.error.code).toBe('resend_too_soon');
    expect(Number(tooSoon.headers['retry-after'])).toBeGreaterThanOrEqual(1);

    const mails = harness.sendgrid.deliveredTo(email);
    expect(mails).toHaveLength(2);
    const newToken = tokenIn(mails[1]!);
    expect(newToken).not.toBe(oldToken);

    const oldLink = await harness.api.post('/v1/invitations/accept').send({ token: oldToken, password: 'the old link is dead' });
    expect(oldLink.status).toBe(410);
    expect(await membershipStatus(email)).toBe('invited');

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await asAdmin(harness.api.post(`${usersPath()}/${userId}/invitation/resend`))).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const overLimit = await asAdmin(harness.api.post(`${usersPath()}/${userId}/invitation/resend`));
    expect(overLimit.status).toBe(409);
    expect(overLimit.body.error.code).toBe('resend_limit_reached');

    const latestToken = tokenIn(harness.sendgrid.deliveredTo(email).at(-1)!);
    const accepted = await harness.api.post('/v1/invitations/accept').send({ token: latestToken, password: 'the newest link works' });
    expect(accepted.status).toBe(200);
    const result = await harness.temporal.workflow.getHandle(response.body.invitation.workflowId).result();
    expect(result.outcome).toBe('accepted');
  });

  test('revoke kills the link', async () => {
    const email = uniqueEmail('revoked');
    const response = await invite(email);
    expect(response.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);

    const revoked = await asAdmin(harness.api.post(`${usersPath()}/${response.body.id}/invitation/revoke`));
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    expect(revoked.body.invitation.status).toBe('revoked');
    const result = await harness.temporal.workflow.getHandle(response.body.invitation.workflowId).result();
    expect(result.outcome).toBe('revoked');

    const before = await tableCounts();
    const accept = await harness.api.post('/v1/invitations/accept').send({ token, password: 'revoked links fail' });
    expect(accept.status).toBe(410);
    expect(await tableCounts()).toEqual(before);

    const again = await asAdmin(harness.api.post(`${usersPath()}/${response.body.id}/invitation/revoke`));
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('invitation_not_pending');
    const resend = await asAdmin(harness.api.post(`${usersPath()}/${response.body.id}/invitation/resend`));
    expect(resend.status).toBe(409);
  });

  test('unknown token is gone', async () => {
    const before = await tableCounts();
    for (const token of ['A'.repeat(43), 'not-a-token', 'x'.repeat(150)]) {
      const response = await harness.api.post('/v1/invitations/accept').send({ token, password: 'a fine long password' });
      expect(response.status).toBe(410);
      expect(response.body.error.message).toContain('not valid');
    }
    expect(await tableCounts()).toEqual(before);
  });
});

describe('duplicate invitations', () => {
  test('second invite while pending is 409', async () => {
    const email = uniqueEmail('twice');
    expect((await invite(email)).status).toBe(202);
    const second = await invite(email.toUpperCase());
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('invitation_pending');
  });

  test('20 concurrent invites make one', async () => {
    const email = uniqueEmail('crowd');
    const responses = await Promise.all(Array.from({ length: 20 }, () => invite(email)));
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses.filter((status) => status === 202)).toHaveLength(1);
    expect(statuses.filter((status) => status === 409)).toHaveLength(19);

    const invitations = await harness.db('invitations').where({ email_normalized: email });
    expect(invitations).toHaveLength(1);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length >= 1);
    // Wait past any straggling duplicate before counting.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
  });

  test('active member invite is 409', async () => {
    const email = uniqueEmail('already');
    await harness.addMember(email, ['meter_viewer']);
    const response = await invite(email);
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('already_member');
  });
});
