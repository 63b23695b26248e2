import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MockActivityEnvironment } from '@temporalio/testing';

import { createInvitationActivities, type RecordedInvitation } from '../activities/invitations.js';
import { createEmailSender } from '../lib/email/index.js';
import { deriveKey } from '../lib/secrets.js';
import { INVALID_RECIPIENT_ERROR, linkIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

/**
 * Activities run at least once, so each one is run twice here against the real database and fake
 * SendGrid, as Temporal would after a lost completion, and the second run must change nothing.
 */

let harness: Harness;
let activities: ReturnType<typeof createInvitationActivities>;

beforeAll(async () => {
  harness = await startHarness({ inProcessWorker: false });
  activities = createInvitationActivities({
    db: harness.db,
    email: createEmailSender(harness.config, (await import('pino')).pino({ level: 'silent' })),
    tokenKey: deriveKey(harness.config.appSecret, 'invitation-token'),
    appBaseUrl: harness.config.appBaseUrl,
  });
});

afterAll(async () => {
  await harness?.close();
});

/** Creates activity contexts that belong to one made-up workflow run. */
function workflowRun() {
  const workflowId = `invitation-test-${randomUUID()}`;
  const runId = randomUUID();
  return {
    workflowId,
    environment: () => new MockActivityEnvironment({ workflowExecution: { workflowId, runId } }),
  };
}

async function record(run: ReturnType<typeof workflowRun>, email: string): Promise<RecordedInvitation> {
  return run.environment().run(activities.recordInvitation, {
    accountId: harness.seed.accountId,
    environmentId: harness.seed.sandboxId,
    email,
    roles: ['customer_viewer'],
    invitedByUserId: harness.seed.adminUserId,
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
  });
}

describe('invitation activities', () => {
  test('recordInvitation twice records once', async () => {
    const run = workflowRun();
    const email = uniqueEmail('twice');
    const first = await record(run, email);
    const second = await record(run, email);

    expect(second).toEqual(first);
    expect(await harness.db('invitations').where({ email_normalized: email })).toHaveLength(1);
    expect(await harness.db('audit_events').where({ workflow_id: run.workflowId, action: 'invitation.created' })).toHaveLength(1);
  });

  test('recordInvitation rejects second pending invitation', async () => {
    const email = uniqueEmail('pending');
    await record(workflowRun(), email);
    await expect(record(workflowRun(), email)).rejects.toMatchObject({ type: 'InvitationPending', nonRetryable: true });
  });

  test('sendInvitationEmail twice mails once', async () => {
    const run = workflowRun();
    const email = uniqueEmail('mail');
    const { invitationId } = await record(run, email);
    const input = { invitationId, step: 'initial', kind: 'invitation' as const };

    expect(await run.environment().run(activities.sendInvitationEmail, input)).toEqual({ status: 'pending' });
    expect(await run.environment().run(activities.sendInvitationEmail, input)).toEqual({ status: 'pending' });
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
  });

  test('retried send repeats the same link', async () => {
    const run = workflowRun();
    const email = uniqueEmail('retry');
    const { invitationId } = await record(run, email);
    const input = { invitationId, step: 'initial', kind: 'invitation' as const };

    harness.sendgrid.failNext(500);
    await expect(run.environment().run(activities.sendInvitationEmail, input)).rejects.toThrow(/SendGrid request failed/);
    await run.environment().run(activities.sendInvitationEmail, input);

    const requests = harness.sendgrid.received.filter((mail) => mail.body.personalizations[0]?.to[0]?.email === email);
    expect(requests.map((mail) => mail.status)).toEqual([500, 202]);
    expect(linkIn(requests[1]!)).toBe(linkIn(requests[0]!));
  });

  test('permanent SendGrid rejection is not retried', async () => {
    const run = workflowRun();
    const { invitationId } = await record(run, uniqueEmail('bounce'));
    harness.sendgrid.failNext(400);
    await expect(
      run.environment().run(activities.sendInvitationEmail, { invitationId, step: 'initial', kind: 'invitation' as const }),
    ).rejects.toMatchObject({ type: 'EmailRejected', nonRetryable: true });
  });

  test('rejected email not sent again', async () => {
    const run = workflowRun();
    const email = uniqueEmail('rejected');
    const { invitationId } = await record(run, email);
    const input = { invitationId, step: 'initial', kind: 'invitation' as const };
    harness.sendgrid.failNext(400, { errors: [INVALID_RECIPIENT_ERROR] });
    await expect(run.environment().run(activities.sendInvitationEmail, input)).rejects.toMatchObject({ type: 'EmailRejected' });
    await expect(run.environment().run(activities.sendInvitationEmail, input)).rejects.toMatchObject({
      type: 'EmailRejected',
      message: `The email provider rejected this address: ${INVALID_RECIPIENT_ERROR.message} (${INVALID_RECIPIENT_ERROR.field})`,
    });

    const requests = harness.sendgrid.received.filter((mail) => mail.body.personalizations[0]?.to[0]?.email === email);
    expect(requests).toHaveLength(1);
    const rows = await harness.db('invitation_emails').where({ invitation_id: invitationId }).select('status', 'rejection_reason');
    expect(rows).toEqual([{ status: 'rejected', rejection_reason: `${INVALID_RECIPIENT_ERROR.message} (${INVALID_RECIPIENT_ERROR.field})` }]);
    const events = await harness.db('audit_events').where({ action: 'invitation.email_rejected' }).whereRaw("details->>'invitationId' = ?", [invitationId]);
    expect(events).toHaveLength(1);
  });

  test('expireInvitation twice ends once', async () => {
    const run = workflowRun();
    const { invitationId, membershipId } = await record(run, uniqueEmail('expire'));

    expect(await run.environment().run(activities.expireInvitation, { invitationId })).toEqual({ status: 'expired' });
    expect(await run.environment().run(activities.expireInvitation, { invitationId })).toEqual({ status: 'expired' });

    const invitation = await harness.db('invitations').where({ id: invitationId }).first();
    expect(invitation.status).toBe('expired');
    expect(invitation.token_hash).toBeNull();
    expect((await harness.db('memberships').where({ id: membershipId }).first()).status).toBe('expired');
    expect(await harness.db('audit_events').where({ workflow_id: run.workflowId, action: 'invitation.expired' })).toHaveLength(1);
  });

  test('ended invitation gets no email', async () => {
    const run = workflowRun();
    const email = uniqueEmail('ended');
    const { invitationId } = await record(run, email);
    await run.environment().run(activities.revokeInvitation, { invitationId, actorUserId: null, reason: 'test' });

    const result = await run.environment().run(activities.sendInvitationEmail, { invitationId, step: 'initial', kind: 'invitation' as const });
    expect(result).toEqual({ status: 'revoked' });
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(0);
  });
});
