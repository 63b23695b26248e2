import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { TemporalServer } from './support/temporal-server.js';

/**
 * The Temporal Service going down while invitations wait on their timers. The test runs a dev server
 * of its own with a SQLite file, stops it, and starts it again on the same port and file.
 */

const server = new TemporalServer();
let harness: Harness;

beforeAll(async () => {
  await server.start();
  harness = await startHarness({ env: { TEMPORAL_ADDRESS: server.address, INVITE_TTL: '30s', INVITE_REMINDER_AFTER: '8s' } });
});

afterAll(async () => {
  await harness?.close();
  await server.destroy();
});

describe('Temporal restart', () => {
  test('timers fire after a restart', async () => {
    const expiring = uniqueEmail('expiring');
    const accepting = uniqueEmail('accepting');
    const invited = [];
    for (const email of [expiring, accepting]) {
      const response = await harness.invite(email);
      expect(response.status).toBe(202);
      invited.push(response.body);
    }
    await harness.sendgrid.waitFor(() => [expiring, accepting].every((email) => harness.sendgrid.deliveredTo(email).length === 1));

    const deliveredAt = Date.now();

    await server.stop();
    for (const email of [expiring, accepting]) {
      expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
    }
    // Both reminders, due 8 s after the first emails, fall due while the server is down.
    await new Promise((resolve) => setTimeout(resolve, Math.max(deliveredAt + 9_000 - Date.now(), 0)));
    const restartedAt = new Date();
    await server.start();

    // Overdue timers fire once the server is back, and only once.
    await harness.sendgrid.waitFor(() => [expiring, accepting].every((email) => harness.sendgrid.deliveredTo(email).length === 2), 60_000);
    for (const email of [expiring, accepting]) {
      const invitation = await harness.db('invitations').where({ email_normalized: email }).first('reminder_sent_at');
      expect(new Date(invitation.reminder_sent_at).getTime()).toBeGreaterThanOrEqual(restartedAt.getTime());
      expect(harness.sendgrid.deliveredTo(email)[1]!.body.categories).toEqual(['invitation-reminder']);
    }

    // Signals and links work against the restarted server.
    const token = tokenIn(harness.sendgrid.deliveredTo(accepting)[1]!);
    await harness.api.post('/v1/invitations/accept').send({ token, password: 'accepted after restart' }).expect(200);
    const [expiringMember, acceptingMember] = invited;
    expect((await harness.temporal.workflow.getHandle(acceptingMember.invitation.workflowId).result()).outcome).toBe('accepted');

    // The expiry timer, still in the future at the restart, fires at its time and not before.
    expect((await harness.temporal.workflow.getHandle(expiringMember.invitation.workflowId).result()).outcome).toBe('expired');
    const expired = await harness.db('invitations').where({ id: expiringMember.invitation.id }).first('status', 'expires_at', 'ended_at');
    expect(expired.status).toBe('expired');
    expect(new Date(expired.ended_at).getTime()).toBeGreaterThanOrEqual(new Date(expired.expires_at).getTime());
    expect(harness.sendgrid.deliveredTo(expiring)).toHaveLength(2);
  });
});
