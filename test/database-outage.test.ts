import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { createDatabase, type Knex } from '../db/connection.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { listMembers, settledEmailRows, waitForActivityAttempt } from './support/outage-checks.js';
import { lockTable, waitForBlockedStatement } from './support/table-locks.js';
import { TcpProxy } from './support/tcp-proxy.js';

/**
 * Postgres going away while the API and the worker use it. The product reaches the run's database
 * through a TCP proxy that the test cuts and restores; the shared Postgres server itself keeps running.
 */

const databaseUrl = process.env.LIFECYCLE_TEST_DATABASE_URL!;
const proxy = TcpProxy.forDatabaseUrl(databaseUrl);
let harness: Harness;
/** A connection past the proxy, for the test's own locks and checks while the product's connections are cut. */
let direct: Knex;

beforeAll(async () => {
  await proxy.start();
  direct = createDatabase({ url: databaseUrl, poolMax: 2 });
  harness = await startHarness({
    env: { DATABASE_URL: proxy.proxiedUrl(databaseUrl), INVITE_TTL: '10m', INVITE_REMINDER_AFTER: '10s' },
  });
});

afterAll(async () => {
  await proxy.restore();
  await harness?.close();
  await direct?.destroy();
  await proxy.stop();
});

describe('database outage', () => {
  test('API answers 503, then recovers', async () => {
    expect((await listMembers(harness)).status).toBe(200);
    await proxy.cut();

    const listed = await listMembers(harness);
    expect(listed.status).toBe(503);
    expect(listed.headers['retry-after']).toBe('5');
    expect(listed.body.error).toEqual({
      code: 'database_unavailable',
      message: 'The database is unreachable at the moment; retry the request in 5 s.',
      details: { retryAfterSeconds: 5 },
    });

    const email = uniqueEmail('during-outage');
    const invited = await harness.invite(email);
    expect(invited.status).toBe(503);
    expect(invited.headers['retry-after']).toBe('5');
    expect(await direct('users').where({ email }).first()).toBeUndefined();

    await proxy.restore();
    // No restart: the pool opens new connections on the next request.
    await eventually(async () => ((await listMembers(harness)).status === 200 ? true : undefined), 30_000, 'the API to answer 200 again');
  });

  test('activity cut mid-write retries until back', async () => {
    const email = uniqueEmail('reminded');
    const invited = await harness.invite(email);
    expect(invited.status).toBe(202);
    const { workflowId, id: invitationId } = invited.body.invitation;
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    // Cutting the database between SendGrid's 202 and the activity's record of it would send the email again.
    expect(await settledEmailRows(direct, invitationId)).toEqual([{ step: 'initial', status: 'sent' }]);

    // The reminder, due 10 s after the first email, stops at its insert into invitation_emails; the proxy
    // then drops its connection.
    const lock = await lockTable(direct, 'invitation_emails');
    try {
      expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
      await waitForBlockedStatement(direct, 'insert into "invitation_emails"');
      await proxy.cut();
    } finally {
      await lock.release();
    }

    // Temporal retries the activity with backoff while Postgres stays unreachable.
    const pending = await waitForActivityAttempt(harness, workflowId, 'sendInvitationEmail', 3);
    expect(pending.lastFailure?.message).toBeTruthy();
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);

    await proxy.restore();
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2, 60_000);

    // The cut transaction left nothing behind, and the retry wrote each row once.
    const emails = await settledEmailRows(direct, invitationId);
    expect(emails).toEqual([
      { step: 'initial', status: 'sent' },
      { step: 'reminder', status: 'sent' },
    ]);
    const reminders = await direct('audit_events').where({ workflow_id: workflowId, action: 'invitation.reminder_sent' });
    expect(reminders).toHaveLength(1);
    expect(harness.sendgrid.deliveredTo(email)[1]!.body.categories).toEqual(['invitation-reminder']);
  });
});
