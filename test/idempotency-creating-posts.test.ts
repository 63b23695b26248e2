import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { uniqueEmail } from './support/harness.js';
import { startSsoHarness, type SsoHarness } from './support/sso-app.js';

/** Idempotency-Key on the creating POSTs beyond invite, bulk and member changes: resend and Okta onboarding. */

let sso: SsoHarness;

beforeAll(async () => {
  sso = await startSsoHarness({}, { env: { INVITE_RESEND_COOLDOWN: '1s', INVITE_REMINDER_AFTER: '1h' } });
});

afterAll(async () => {
  await sso?.close();
});

function newKey(): string {
  return `key-${randomBytes(8).toString('hex')}`;
}

/** Waits `ms` so that a duplicate that was wrongly started has time to show up. */
function settle(ms = 2_000): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Invites `email` to the sandbox and waits for the invitation email; returns the member. */
async function inviteAndWaitForEmail(email: string) {
  const { harness } = sso;
  const invited = await harness.api
    .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
    .set('Authorization', `Bearer ${harness.seed.adminKey}`)
    .send({ email, roles: ['customer_viewer'] });
  expect(invited.status).toBe(202);
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
  return invited.body;
}

describe('resend idempotency', () => {
  test('replay sends no second email', async () => {
    const { harness } = sso;
    const { accountId, adminKey } = harness.seed;
    const email = uniqueEmail('resend');
    const member = await inviteAndWaitForEmail(email);
    await settle(1_200);

    const key = newKey();
    const resendPath = `/v1/accounts/${accountId}/environments/sandbox/users/${member.id}/invitation/resend`;
    const first = await harness.api.post(resendPath).set('Authorization', `Bearer ${adminKey}`).set('Idempotency-Key', key).send();
    expect(first.status).toBe(200);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    // Past the cooldown, so that without the key this would be a second, allowed resend.
    await settle(1_200);

    const replay = await harness.api.post(resendPath).set('Authorization', `Bearer ${adminKey}`).set('Idempotency-Key', key).send();
    expect(replay.status).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(first.body);

    await settle();
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(2);
    const emailRows = await harness.db('invitation_emails').where({ invitation_id: member.invitation.id }).count({ count: '*' });
    expect(Number(emailRows[0]!.count)).toBe(2);
  });

  test('same key, other member: 422', async () => {
    const { harness } = sso;
    const { accountId, adminKey } = harness.seed;
    const members = [await inviteAndWaitForEmail(uniqueEmail('first')), await inviteAndWaitForEmail(uniqueEmail('second'))];
    await settle(1_200);

    const key = newKey();
    const resend = (userId: string) =>
      harness.api.post(`/v1/accounts/${accountId}/environments/sandbox/users/${userId}/invitation/resend`).set('Authorization', `Bearer ${adminKey}`).set('Idempotency-Key', key).send();
    expect((await resend(members[0].id)).status).toBe(200);
    const reused = await resend(members[1].id);
    expect(reused.status).toBe(422);
    expect(reused.body.error.code).toBe('idempotency_key_reused');
  });
});

describe('okta onboarding idempotency', () => {
  test('replay starts one onboarding', async () => {
    const { harness } = sso;
    const { accountId, adminKey } = harness.seed;
    const contact = uniqueEmail('contact');
    const key = newKey();
    const start = () =>
      harness.api
        .post(`/v1/accounts/${accountId}/sso/okta/onboarding`)
        .set('Authorization', `Bearer ${adminKey}`)
        .set('Idempotency-Key', key)
        .send({ contactEmail: contact });

    const first = await start();
    expect(first.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 1);

    const replay = await start();
    expect(replay.status).toBe(202);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(first.body);

    // Without the key, a second start is rejected because one onboarding is already running.
    const withoutKey = await harness.api.post(`/v1/accounts/${accountId}/sso/okta/onboarding`).set('Authorization', `Bearer ${adminKey}`).send({ contactEmail: contact });
    expect(withoutKey.status).toBe(409);

    await settle();
    expect(harness.sendgrid.deliveredTo(contact)).toHaveLength(1);
    const runs = await harness.temporal.workflow.list({ query: `WorkflowId = '${first.body.workflowId}'` });
    let runCount = 0;
    for await (const _run of runs) {
      runCount += 1;
    }
    expect(runCount).toBe(1);
  });
});
