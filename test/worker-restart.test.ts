import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { WorkerProcess } from './support/worker-process.js';

let harness: Harness;
let worker: WorkerProcess | undefined;

beforeAll(async () => {
  harness = await startHarness({
    inProcessWorker: false,
    env: { INVITE_TTL: '10m', INVITE_REMINDER_AFTER: '4s', INVITE_RESEND_COOLDOWN: '1s' },
  });
});

afterAll(async () => {
  await worker?.stop();
  await harness?.close();
});

async function invite(email: string) {
  const response = await harness.api
    .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
    .set('Authorization', `Bearer ${harness.seed.adminKey}`)
    .send({ email, roles: ['customer_viewer'] });
  expect(response.status).toBe(202);
  return response.body;
}

describe('worker crash', () => {
  test('killed worker resumes without duplicates', async () => {
    worker = new WorkerProcess(harness.env);
    await worker.start();

    // Invitation "waiting": its email went out and it sleeps until the reminder is due.
    const waitingEmail = uniqueEmail('waiting');
    const waiting = await invite(waitingEmail);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(waitingEmail).length === 1);

    // Invitation "sending": the worker dies while its SendGrid request is still open.
    const sendingEmail = uniqueEmail('sending');
    harness.sendgrid.holdNext();
    const sending = await invite(sendingEmail);
    await harness.sendgrid.waitFor(() => harness.sendgrid.heldCount === 1);
    await worker.kill();
    // The held request never reaches the dead worker; the fake counts it as not delivered.
    harness.sendgrid.releaseHeld(503);

    // The reminder of "waiting" falls due while no worker runs.
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    worker = new WorkerProcess(harness.env);
    await worker.start();

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(waitingEmail).length === 2, 30_000);
    // Temporal retries the lost email activity once its 30 s start-to-close timeout has passed.
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(sendingEmail).length === 1, 60_000);

    const waitingMails = harness.sendgrid.deliveredTo(waitingEmail);
    expect(waitingMails[1]!.body.categories).toEqual(['invitation-reminder']);
    expect(tokenIn(waitingMails[1]!)).toBe(tokenIn(waitingMails[0]!));

    // Both links work, and the workflows end as accepted with no further email.
    for (const [email, member] of [
      [waitingEmail, waiting],
      [sendingEmail, sending],
    ] as const) {
      const token = tokenIn(harness.sendgrid.deliveredTo(email).at(-1)!);
      const accepted = await harness.api.post('/v1/invitations/accept').send({ token, password: 'survived a crash ok' });
      expect(accepted.status).toBe(200);
      const result = await harness.temporal.workflow.getHandle(member.invitation.workflowId).result();
      expect(result.outcome).toBe('accepted');
    }
    expect(harness.sendgrid.deliveredTo(waitingEmail)).toHaveLength(2);
    expect(harness.sendgrid.deliveredTo(sendingEmail)).toHaveLength(1);
    const emailRows = await harness.db('invitation_emails')
      .whereIn('invitation_id', [waiting.invitation.id, sending.invitation.id])
      .orderBy('created_at')
      .select('step', 'status');
    expect(emailRows).toEqual([
      { step: 'initial', status: 'sent' },
      { step: 'initial', status: 'sent' },
      { step: 'reminder', status: 'sent' },
    ]);
  });
});
