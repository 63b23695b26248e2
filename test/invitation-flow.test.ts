import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { invitationStateQuery } from '../workflows/invitation.js';
import { linkIn, tokenIn } from './support/fake-sendgrid.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness();
});

afterAll(async () => {
  await harness?.close();
});

function usersPath(environment = 'sandbox'): string {
  return `/v1/accounts/${harness.seed.accountId}/environments/${environment}/users`;
}

async function invite(email: string, roles: string[] = ['customer_viewer']) {
  return harness.api.post(usersPath()).set('Authorization', `Bearer ${harness.seed.adminKey}`).send({ email, roles });
}

describe('invitation end to end', () => {
  test('invite, email, accept, active', async () => {
    const email = uniqueEmail('ada');
    const response = await invite(email, ['customer_viewer', 'invoice_contributor']);

    expect(response.status).toBe(202);
    expect(response.body).toMatchObject({ email, status: 'invited', roles: ['customer_viewer', 'invoice_contributor'] });
    expect(response.body.invitation.status).toBe('pending');
    expect(response.body.invitation.workflowId).toMatch(new RegExp(`^invitation-${harness.seed.accountId}-sandbox-[0-9a-f]{24}$`));
    expect(response.body.invitation.workflowId).not.toContain(email.split('@')[0]);
    const { workflowId } = response.body.invitation;

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const [mail] = harness.sendgrid.deliveredTo(email);
    expect(mail!.authorization).toBe('Bearer SG.test-key');
    expect(mail!.body.from.email).toBe('invitations@lifecycle.test');
    expect(mail!.body.subject).toContain(harness.seed.accountId);
    const link = linkIn(mail!);
    expect(link.startsWith('http://127.0.0.1:3999/invitations/accept?token=')).toBe(true);
    const token = tokenIn(mail!);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const handle = harness.temporal.workflow.getHandle(workflowId);
    const pending = await handle.query(invitationStateQuery);
    expect(pending.phase).toBe('pending');

    // Opening the page twice changes nothing and keeps the link usable.
    for (let opening = 0; opening < 2; opening += 1) {
      const page = await harness.api.get(`/invitations/accept?token=${encodeURIComponent(token)}`);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toContain('text/html');
      expect(page.headers['cache-control']).toBe('no-store');
      expect(page.headers['referrer-policy']).toBe('no-referrer');
      expect(page.text).toContain('<form method="post" action="/v1/invitations/accept">');
      expect(page.text).toContain('name="password"');
    }

    const accepted = await harness.api.post('/v1/invitations/accept').send({ token, password: 'correct horse battery staple' });
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ status: 'active', email, accountId: harness.seed.accountId, environment: 'sandbox' });

    const result = await handle.result();
    expect(result.outcome).toBe('accepted');
    // The Temporal Web UI shows these details on the workflow page.
    const metadata = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
    expect(metadata.currentDetails).toContain('**accepted**');

    const listed = await harness.api.get(`${usersPath()}?status=active&q=${encodeURIComponent(email)}`).set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(listed.status).toBe(200);
    expect(listed.body.data).toHaveLength(1);
    expect(listed.body.data[0]).toMatchObject({ email, status: 'active', roles: ['customer_viewer', 'invoice_contributor'] });
    expect(listed.body.data[0].invitation.status).toBe('accepted');

    const user = await harness.db('users').where({ email_normalized: email }).first();
    expect(user.password_hash).toMatch(/^\$argon2id\$/);

    const actions = await harness.db('audit_events').where({ target_user_id: user.id }).orderBy('id').pluck('action');
    expect(actions).toEqual(['invitation.created', 'invitation.accepted']);
    const auditWorkflowIds = await harness.db('audit_events').where({ target_user_id: user.id }).pluck('workflow_id');
    expect(new Set(auditWorkflowIds)).toEqual(new Set([workflowId]));

    // The token, its hash and the password appear in no history, log line or API response.
    const history = JSON.stringify(await handle.fetchHistory());
    const password = 'correct horse battery staple';
    for (const secret of [token, password]) {
      expect(history).not.toContain(secret);
      expect(harness.logLines.join('\n')).not.toContain(secret);
      expect(JSON.stringify(response.body)).not.toContain(secret);
      expect(JSON.stringify(listed.body)).not.toContain(secret);
    }
    expect(JSON.stringify(listed.body)).not.toContain('argon2');
  });

  test('used link is gone and changes nothing', async () => {
    const email = uniqueEmail('grace');
    const response = await invite(email);
    expect(response.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);

    const first = await harness.api.post('/v1/invitations/accept').send({ token, password: 'a long enough password' });
    expect(first.status).toBe(200);
    const userBefore = await harness.db('users').where({ email_normalized: email }).first();

    const second = await harness.api.post('/v1/invitations/accept').send({ token, password: 'another long password' });
    expect(second.status).toBe(410);
    expect(second.body.error.code).toBe('invitation_link_invalid');
    const userAfter = await harness.db('users').where({ email_normalized: email }).first();
    expect(userAfter.password_hash).toBe(userBefore.password_hash);

    const page = await harness.api.get(`/invitations/accept?token=${encodeURIComponent(token)}`);
    expect(page.status).toBe(410);
    expect(page.text).toContain('no longer works');
  });

  test('existing password accepts without a new one', async () => {
    const email = uniqueEmail('member');
    await harness.addMember(email, ['meter_viewer'], harness.seed.productionId);
    await harness.db('users').where({ email_normalized: email }).update({ password_hash: '$argon2id$v=19$m=19456,t=2,p=1$placeholder' });

    const response = await invite(email);
    expect(response.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);

    const page = await harness.api.get(`/invitations/accept?token=${encodeURIComponent(token)}`);
    expect(page.text).not.toContain('name="password"');

    const withPassword = await harness.api.post('/v1/invitations/accept').send({ token, password: 'a brand new password' });
    expect(withPassword.status).toBe(400);
    expect(withPassword.body.error.details).toEqual([expect.objectContaining({ field: 'body.password' })]);

    const accepted = await harness.api.post('/v1/invitations/accept').send({ token });
    expect(accepted.status).toBe(200);
    const user = await harness.db('users').where({ email_normalized: email }).first();
    expect(user.password_hash).toBe('$argon2id$v=19$m=19456,t=2,p=1$placeholder');
  });

  test('form post sets the password and shows a page', async () => {
    const email = uniqueEmail('form');
    expect((await invite(email)).status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);

    const tooShort = await harness.api.post('/v1/invitations/accept').type('form').send({ token, password: 'short' });
    expect(tooShort.status).toBe(400);
    expect(tooShort.text).toContain('at least 12 characters');
    expect(tooShort.text).toContain('<form');

    const sameAsEmail = await harness.api.post('/v1/invitations/accept').type('form').send({ token, password: email.toUpperCase() });
    expect(sameAsEmail.status).toBe(400);
    expect(sameAsEmail.text).toContain('must not be the email address');

    const accepted = await harness.api.post('/v1/invitations/accept').type('form').send({ token, password: 'twelve chars ok!' });
    expect(accepted.status).toBe(200);
    expect(accepted.text).toContain('active member');
    const membership = await eventually(async () => {
      const row = await harness.db('memberships').join('users', 'users.id', 'memberships.user_id').where({ 'users.email_normalized': email }).first('memberships.status');
      return row?.status === 'active' ? row : undefined;
    });
    expect(membership.status).toBe('active');
  });

  test('page form submits as rendered', async () => {
    const email = uniqueEmail('browser');
    expect((await invite(email)).status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
    const page = await harness.api.get(`/invitations/accept?token=${encodeURIComponent(token)}`);

    // Submit every named field the page renders, as a browser would, with the password typed in.
    const fields: Record<string, string> = {};
    for (const [, name, value] of page.text.matchAll(/<input[^>]*\bname="([^"]+)"(?:[^>]*\bvalue="([^"]*)")?/g)) {
      fields[name!] = value ?? '';
    }
    expect(Object.keys(fields).sort()).toEqual(['password', 'token']);
    fields.password = 'typed into the page';

    const accepted = await harness.api.post('/v1/invitations/accept').type('form').send(fields);
    expect(accepted.status).toBe(200);
    expect(accepted.text).toContain('active member');
  });

  test('page allows form posts over http', async () => {
    const page = await harness.api.get('/invitations/accept?token=unknown');
    expect(page.headers['content-security-policy']).not.toContain('upgrade-insecure-requests');
    expect(page.headers['content-security-policy']).toContain("form-action 'self'");
    expect(page.headers['strict-transport-security']).toBeUndefined();
  });
});
