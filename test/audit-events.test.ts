import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;
let invitedUserId: string;
let workflowId: string;

beforeAll(async () => {
  harness = await startHarness();
  const email = uniqueEmail('audited');
  const invited = await harness.api
    .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
    .set('Authorization', `Bearer ${harness.seed.adminKey}`)
    .send({ email, roles: ['invoice_viewer'] });
  expect(invited.status).toBe(202);
  invitedUserId = invited.body.id;
  workflowId = invited.body.invitation.workflowId;
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
  const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
  await harness.api.post('/v1/invitations/accept').send({ token, password: 'an audited password' }).expect(200);
});

afterAll(async () => {
  await harness?.close();
});

function auditEvents(query: Record<string, string> = {}, key = harness.seed.adminKey) {
  return harness.api
    .get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/audit-events`)
    .query(query)
    .set('Authorization', `Bearer ${key}`);
}

describe('audit events', () => {
  test('invitation events newest first', async () => {
    const response = await auditEvents({ target: invitedUserId });
    expect(response.status).toBe(200);
    expect(response.body.data.map((event: { action: string }) => event.action)).toEqual(['invitation.accepted', 'invitation.created']);
    const [accepted, created] = response.body.data;
    expect(created.actorUserId).toBe(harness.seed.adminUserId);
    expect(created.actorType).toBe('user');
    expect(created.workflowId).toBe(workflowId);
    expect(created.details.roles).toEqual(['invoice_viewer']);
    expect(accepted.actorType).toBe('invitee');
    expect(accepted.workflowId).toBe(workflowId);
    expect(JSON.stringify(response.body)).not.toMatch(/token|password_hash|argon2/);
  });

  test('filters by action and actor', async () => {
    const exact = await auditEvents({ action: 'invitation.created', actor: harness.seed.adminUserId });
    expect(exact.status).toBe(200);
    expect(exact.body.data.length).toBeGreaterThanOrEqual(1);
    expect(exact.body.data.every((event: { action: string }) => event.action === 'invitation.created')).toBe(true);

    const prefix = await auditEvents({ action: 'invitation.', target: invitedUserId });
    expect(prefix.body.data).toHaveLength(2);
  });

  test('filters by time', async () => {
    const future = new Date(Date.now() + 60_000).toISOString();
    const none = await auditEvents({ from: future });
    expect(none.status).toBe(200);
    expect(none.body.data).toEqual([]);
    const before = await auditEvents({ to: future, target: invitedUserId });
    expect(before.body.data).toHaveLength(2);
  });

  test('pages with a cursor', async () => {
    const first = await auditEvents({ target: invitedUserId, limit: '1' });
    expect(first.body.data).toHaveLength(1);
    expect(first.body.nextCursor).not.toBeNull();
    const second = await auditEvents({ target: invitedUserId, limit: '1', cursor: first.body.nextCursor });
    expect(second.body.data).toHaveLength(1);
    expect(second.body.data[0].id).not.toBe(first.body.data[0].id);
    expect(second.body.nextCursor).toBeNull();
  });

  test('bad query is 400', async () => {
    const queries: Record<string, string>[] = [{ limit: '0' }, { actor: 'someone' }, { from: 'yesterday' }, { cursor: 'abc' }, { verbose: 'true' }];
    for (const query of queries) {
      const response = await auditEvents(query);
      expect(response.status).toBe(400);
      expect(response.body.error.details[0].field).toBe(`query.${Object.keys(query)[0]}`);
    }
  });

  test('viewer cannot read the log', async () => {
    const viewer = await harness.addMember(uniqueEmail('viewer'), ['customer_viewer']);
    const response = await auditEvents({}, viewer.key);
    expect(response.status).toBe(403);
  });
});
