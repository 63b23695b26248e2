import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { lockTable, waitForBlockedStatement, waitForSessionEnd } from './support/table-locks.js';
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
  const response = await harness.invite(email);
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

  test('killed mid-write leaves no partial state', async () => {
    await worker?.stop();
    worker = new WorkerProcess(harness.env);
    await worker.start();

    // "email": the SendGrid request is open when the worker dies.
    const emailStep = uniqueEmail('email-step');
    harness.sendgrid.holdNext();
    await invite(emailStep);
    await harness.sendgrid.waitFor(() => harness.sendgrid.heldCount === 1);

    // "database": the initial email's transaction waits on its insert into invitation_emails.
    const databaseStep = uniqueEmail('database-step');
    const emailRowsLock = await lockTable(harness.db, 'invitation_emails');
    await invite(databaseStep);
    const databasePid = await waitForBlockedStatement(harness.db, 'insert into "invitation_emails"');

    // "audit": recordInvitation's transaction waits on its audit event, its last write. The API request
    // waits for the invitation to be recorded, so it stays open across the crash.
    const auditStep = uniqueEmail('audit-step');
    const auditLock = await lockTable(harness.db, 'audit_events');
    // then() sends the request now; the response is awaited after the restart.
    const auditInvite = harness.invite(auditStep).then((response) => response);
    const auditPid = await waitForBlockedStatement(harness.db, 'insert into "audit_events"');

    await worker.kill();
    harness.sendgrid.releaseHeld(503);
    await auditLock.release();
    await emailRowsLock.release();
    // Postgres rolls back each transaction once its statement finishes and it finds the client gone.
    await waitForSessionEnd(harness.db, databasePid);
    await waitForSessionEnd(harness.db, auditPid);

    expect(await harness.db('users').where({ email: auditStep }).first()).toBeUndefined();
    const databaseInvitation = await harness.db('invitations').where({ email_normalized: databaseStep }).first('id');
    expect(await harness.db('invitation_emails').where({ invitation_id: databaseInvitation.id })).toEqual([]);

    worker = new WorkerProcess(harness.env);
    await worker.start();
    // Temporal retries the lost email activity once its 30 s start-to-close timeout has passed, and the
    // lost workflow task, whose local activity records the invitation, once its 10 s timeout has passed.
    const people = [emailStep, databaseStep, auditStep];
    await harness.sendgrid.waitFor(() => people.every((email) => harness.sendgrid.deliveredTo(email).length >= 1), 90_000);
    const audited = await auditInvite;
    expect(audited.status).toBe(202);

    for (const email of people) {
      const token = tokenIn(harness.sendgrid.deliveredTo(email).at(-1)!);
      const accepted = await harness.api.post('/v1/invitations/accept').send({ token, password: 'survived a crash ok' });
      expect(accepted.status).toBe(200);
      const invitation = await harness.db('invitations').where({ email_normalized: email }).first('id', 'workflow_id', 'status');
      expect(invitation.status).toBe('accepted');
      const result = await harness.temporal.workflow.getHandle(invitation.workflow_id).result();
      expect(result.outcome).toBe('accepted');

      // Every step wrote one row and one email; a reminder may have fallen due before the acceptance.
      const rows = await harness.db('invitation_emails').where({ invitation_id: invitation.id }).orderBy('created_at').select('step', 'status');
      expect(rows[0]).toEqual({ step: 'initial', status: 'sent' });
      expect(rows.every((row) => row.status === 'sent')).toBe(true);
      expect(new Set(rows.map((row) => row.step)).size).toBe(rows.length);
      expect(harness.sendgrid.deliveredTo(email)).toHaveLength(rows.length);

      const created = await harness.db('audit_events').where({ action: 'invitation.created' }).whereRaw("details->>'invitationId' = ?", [invitation.id]);
      expect(created).toHaveLength(1);
    }
    expect(await harness.db('invitations').whereIn('email_normalized', people).count({ count: '*' })).toEqual([{ count: '3' }]);
  });
});
