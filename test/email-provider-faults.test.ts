import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { WorkflowHandle } from '@temporalio/client';

import { INVALID_RECIPIENT_ERROR } from './support/fake-sendgrid.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';

/**
 * SendGrid failing in each way it can: rate limiting, server errors, no response, and a permanent
 * rejection of the address. The real @sendgrid/mail client talks to the fake over HTTP, and a real
 * worker runs the invitation workflows.
 */

let harness: Harness;

beforeAll(async () => {
  // No reminder or expiry during these tests: each invitation sends exactly one email.
  harness = await startHarness({ env: { INVITE_TTL: '1h', INVITE_REMINDER_AFTER: '30m' } });
});

afterAll(async () => {
  await harness?.close();
});

function requestsTo(email: string) {
  return harness.sendgrid.received.filter((mail) => mail.body.personalizations[0]?.to[0]?.email === email);
}

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

/** Waits until the workflow's initial email activity completed or failed, and returns the workflow history. */
async function historyAfterEmail(workflowId: string): Promise<HistoryEvent[]> {
  const handle = harness.temporal.workflow.getHandle(workflowId);
  return eventually(
    async () => {
      const { events } = await handle.fetchHistory();
      const scheduledIds = (events ?? [])
        .filter((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'sendInvitationEmail')
        .map((event) => String(event.eventId));
      const finished = (events ?? []).some((event) => {
        const attributes = event.activityTaskCompletedEventAttributes ?? event.activityTaskFailedEventAttributes;
        return attributes && scheduledIds.includes(String(attributes.scheduledEventId));
      });
      return finished ? (events ?? []) : undefined;
    },
    60_000,
    `the email activity of ${workflowId} to finish`,
  );
}

function emailActivityStarts(events: HistoryEvent[]) {
  const scheduled = events.find((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'sendInvitationEmail')!;
  return events
    .filter((event) => String(event.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled.eventId))
    .map((event) => event.activityTaskStartedEventAttributes!);
}

describe('email provider faults', () => {
  test('429 waits for Retry-After', async () => {
    const email = uniqueEmail('limited');
    harness.sendgrid.failNext(429, { retryAfterSeconds: 3 });
    const invited = await harness.invite(email);
    expect(invited.status).toBe(202);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1, 30_000);
    expect(requestsTo(email).map((mail) => mail.status)).toEqual([429, 202]);

    // The second attempt records why the first failed, and the delay that the provider asked for.
    const [start] = emailActivityStarts(await historyAfterEmail(invited.body.invitation.workflowId));
    expect(start!.attempt).toBe(2);
    expect(start!.lastFailure?.applicationFailureInfo?.type).toBe('EmailRateLimited');
    expect(Number(start!.lastFailure?.applicationFailureInfo?.nextRetryDelay?.seconds)).toBe(3);
  });

  test('500 and timeout retried, sent once', async () => {
    const email = uniqueEmail('flaky');
    harness.sendgrid.failNext(500);
    // The fake never responds to this one, so the SendGrid client ends it after its 10 s request timeout.
    harness.sendgrid.holdNext();
    const invited = await harness.invite(email);
    expect(invited.status).toBe(202);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1, 60_000);
    // NOTE: had the provider taken the request that timed out, the person would get that email twice. The
    // Mail Send request carries no idempotency key, so nothing on this side can tell the two cases apart.
    expect(requestsTo(email).map((mail) => mail.status)).toEqual([500, 0, 202]);
    harness.sendgrid.releaseHeld(503);

    const events = await historyAfterEmail(invited.body.invitation.workflowId);
    expect(emailActivityStarts(events)[0]!.attempt).toBe(3);
    // The retry policy has a bound, so a provider that never recovers fails the workflow instead of retrying forever.
    const scheduled = events.find((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'sendInvitationEmail');
    expect(scheduled!.activityTaskScheduledEventAttributes!.retryPolicy!.maximumAttempts).toBeGreaterThan(0);

    const rows = await harness.db('invitation_emails').where({ invitation_id: invited.body.invitation.id }).select('step', 'status');
    expect(rows).toEqual([{ step: 'initial', status: 'sent' }]);
  });

  test('400 invalid recipient is final', async () => {
    const email = uniqueEmail('bounced');
    harness.sendgrid.failNext(400, { errors: [INVALID_RECIPIENT_ERROR] });
    const invited = await harness.invite(email);
    expect(invited.status).toBe(202);

    const result = await harness.temporal.workflow.getHandle(invited.body.invitation.workflowId).result();
    expect(result.outcome).toBe('revoked');
    expect(requestsTo(email)).toHaveLength(1);

    const reason = `${INVALID_RECIPIENT_ERROR.message} (${INVALID_RECIPIENT_ERROR.field})`;
    const environmentPath = `/v1/accounts/${harness.seed.accountId}/environments/sandbox`;
    const member = await harness.api.get(`${environmentPath}/users/${invited.body.id}`).set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(member.status).toBe(200);
    expect(member.body.status).toBe('revoked');
    expect(member.body.invitation.status).toBe('revoked');
    expect(member.body.invitation.lastEmail).toMatchObject({ step: 'initial', status: 'rejected', sentAt: null, rejectionReason: reason });
    expect(member.body.invitation.lastEmail.rejectedAt).toEqual(expect.any(String));

    const audit = await harness.api
      .get(`${environmentPath}/audit-events`)
      .query({ target: invited.body.id })
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(audit.status).toBe(200);
    const actions = audit.body.data.map((event: { action: string }) => event.action);
    expect(actions).toEqual(['invitation.revoked', 'invitation.email_rejected', 'invitation.created']);
    const [revoked, rejected] = audit.body.data;
    expect(rejected.details).toEqual({ invitationId: invited.body.invitation.id, step: 'initial', statusCode: 400, reason });
    expect(revoked.details.reason).toBe('email_rejected');
  });
});
