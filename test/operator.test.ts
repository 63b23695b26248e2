import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { operatorDeactivationReportSchema } from '../api/routes/operator.js';
import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { hashPassword } from '../lib/passwords.js';
import { hashToken } from '../lib/secrets.js';
import { tokenIn, type ReceivedMail } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { recordHistory } from './support/histories.js';

let harness: Harness;
let operatorKey: string;
const ADMIN_SCRIPT = fileURLToPath(new URL('../scripts/admin.ts', import.meta.url));
const PASSWORD = 'an operator test password';

beforeAll(async () => {
  harness = await startHarness();
  operatorKey = createOperatorKey('support desk');
});

afterAll(async () => {
  await harness?.close();
});

/** Runs `npm run admin -- create-operator-key` against the test database and returns standard output. */
function createOperatorKey(name: string): string {
  return execFileSync(process.execPath, ['--import', 'tsx', ADMIN_SCRIPT, 'create-operator-key', '--name', name], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DATABASE_URL: harness.env.DATABASE_URL! },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function operatorDeactivate(body: unknown, credential = operatorKey) {
  return harness.api.post('/v1/operator/users/deactivate').set('Authorization', `Bearer ${credential}`).send(body as object);
}

function textOf(mail: ReceivedMail): string {
  return mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
}

/** Another account with environments sandbox and production, and an administrator in each. */
async function otherAccount() {
  const accountId = uniqueId('acct');
  await createAccount(harness.db, { id: accountId, name: `Account ${accountId}`, environments: ['sandbox', 'production'] });
  const sandboxId = (await findEnvironment(harness.db, accountId, 'sandbox'))!.id;
  const productionId = (await findEnvironment(harness.db, accountId, 'production'))!.id;
  const adminKeys: Record<string, string> = {};
  for (const [name, environmentId] of [['sandbox', sandboxId], ['production', productionId]] as const) {
    const { userId } = await ensureActiveMember(harness.db, { accountId, environmentId, email: uniqueEmail('admin'), roles: ['administrator'] });
    adminKeys[name] = (await createApiKey(harness.db, { userId, accountId, environmentId, name: 'admin key' })).key;
  }
  return { accountId, sandboxId, productionId, adminKeys };
}

async function memberKey(accountId: string, environmentId: string, email: string, roles: string[]): Promise<string> {
  const { userId } = await ensureActiveMember(harness.db, { accountId, environmentId, email, roles });
  return (await createApiKey(harness.db, { userId, accountId, environmentId, name: 'member key' })).key;
}

describe('operator key command', () => {
  test('prints the key once', async () => {
    expect(operatorKey).toMatch(/^lo_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const row = await harness.db('operator_api_keys').where({ secret_hash: hashToken(operatorKey) }).first();
    expect(row.name).toBe('support desk');
    expect(JSON.stringify(row)).not.toContain(operatorKey);
  });
});

describe('operator deactivation', () => {
  test('deactivates across two accounts', async () => {
    const email = uniqueEmail('leaver');
    const second = await otherAccount();
    const third = await otherAccount();

    // Harness account: an active user administrator, signed in and with an API key.
    const { userId, key: homeKey } = await harness.addMember(email, ['user_administrator']);
    await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
    const session = (await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD }).expect(200)).body.token as string;
    // Second account: active in production, invited to sandbox.
    const productionKey = await memberKey(second.accountId, second.productionId, email, ['meter_viewer']);
    const invited = await harness.api
      .post(`/v1/accounts/${second.accountId}/environments/sandbox/users`)
      .set('Authorization', `Bearer ${second.adminKeys.sandbox}`)
      .send({ email, roles: ['customer_viewer'] });
    expect(invited.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const invitationToken = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
    // Third account: the only administrator of a new environment there.
    await createAccount(harness.db, { id: third.accountId, name: 'unused', environments: ['solo'] });
    const soloId = (await findEnvironment(harness.db, third.accountId, 'solo'))!.id;
    const soloKey = await memberKey(third.accountId, soloId, email, ['administrator']);

    const response = await operatorDeactivate({ email: email.toUpperCase(), reason: 'support ticket 4711' });
    expect(response.status).toBe(200);
    expect(response.body.userId).toBe(userId);
    expect(response.body.workflowId).toBe(`operator-deactivate-${userId}`);
    expect(response.body.sessionsEnded).toBe(1);
    expect(operatorDeactivationReportSchema.safeParse(response.body).error).toBeUndefined();

    const byPlace = Object.fromEntries(
      response.body.memberships.map((result: { accountId: string; environment: string }) => [`${result.accountId}/${result.environment}`, result]),
    );
    expect(Object.keys(byPlace).sort()).toEqual(
      [`${harness.seed.accountId}/sandbox`, `${second.accountId}/production`, `${second.accountId}/sandbox`, `${third.accountId}/solo`].sort(),
    );
    expect(byPlace[`${harness.seed.accountId}/sandbox`]).toMatchObject({
      outcome: 'deactivated',
      statusBefore: 'active',
      impact: { sessions: 1, apiKeys: 1, pendingInvitations: 0, ssoOnboardings: 0 },
    });
    expect(byPlace[`${second.accountId}/production`]).toMatchObject({ outcome: 'deactivated', impact: { apiKeys: 1 } });
    expect(byPlace[`${second.accountId}/sandbox`]).toMatchObject({ outcome: 'deactivated', statusBefore: 'invited', impact: { pendingInvitations: 1 } });
    expect(byPlace[`${third.accountId}/solo`]).toMatchObject({ outcome: 'skipped', reason: 'last_administrator' });

    // Everything deactivated stops at once; the skipped membership keeps its API key.
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${session}`)).status).toBe(401);
    expect((await harness.api.get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`).set('Authorization', `Bearer ${homeKey}`)).status).toBe(401);
    expect((await harness.api.get('/v1/me').set('Authorization', `Bearer ${productionKey}`)).status).toBe(401);
    expect((await harness.api.get(`/v1/accounts/${third.accountId}/environments/solo/users`).set('Authorization', `Bearer ${soloKey}`)).status).toBe(200);
    expect((await harness.api.post('/v1/invitations/accept').send({ token: invitationToken, password: 'revoked by support' })).status).toBe(410);
    const invitationOutcome = await harness.temporal.workflow.getHandle(invited.body.invitation.workflowId).result();
    expect(invitationOutcome.outcome).toBe('revoked');

    const events = await harness.db('audit_events').where({ target_user_id: userId, actor_type: 'operator' }).orderBy('id');
    const deactivations = events.filter((event) => event.action === 'membership.deactivated');
    expect(deactivations).toHaveLength(3);
    for (const event of deactivations) {
      expect(event.details.reason).toBe('support ticket 4711');
      expect(event.details.operatorKeyId).toBeDefined();
      expect(event.actor_user_id).toBeNull();
    }
    const [summary] = events.filter((event) => event.action === 'user.operator_deactivated');
    expect(summary.details.sessionsEnded).toBe(1);

    // One summary notice instead of one email per membership.
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    await harness.temporal.workflow.getHandle(response.body.workflowId).result();
    const mails = harness.sendgrid.deliveredTo(email);
    expect(mails).toHaveLength(2);
    expect(mails[1]!.body.subject).toBe('Your access was deactivated');
    expect(textOf(mails[1]!)).toContain(`Account ${second.accountId} (production)`);
    expect(textOf(mails[1]!)).not.toContain('(solo)');

    // A second run finds only the skipped membership.
    const again = await operatorDeactivate({ email });
    expect(again.status).toBe(200);
    expect(again.body.memberships).toHaveLength(1);
    expect(again.body.memberships[0]).toMatchObject({ outcome: 'skipped', reason: 'last_administrator' });
    expect(again.body.sessionsEnded).toBe(0);

    const logs = harness.logLines.join('\n');
    for (const secret of [operatorKey, session, homeKey, productionKey, invitationToken]) {
      expect(logs).not.toContain(secret);
    }
  });

  test('only operator keys allowed', async () => {
    const body = { email: uniqueEmail('nobody') };
    expect((await harness.api.post('/v1/operator/users/deactivate').send(body)).status).toBe(401);
    const byApiKey = await operatorDeactivate(body, harness.seed.adminKey);
    expect(byApiKey.status).toBe(403);
    expect(byApiKey.body.error.code).toBe('forbidden');

    const revoked = createOperatorKey('revoked desk');
    await harness.db('operator_api_keys').where({ secret_hash: hashToken(revoked) }).update({ revoked_at: harness.db.fn.now() });
    expect((await operatorDeactivate(body, revoked)).status).toBe(401);
  });

  test('bad requests change nothing', async () => {
    const unknown = await operatorDeactivate({ email: uniqueEmail('unknown') });
    expect(unknown.status).toBe(404);
    const cases: [unknown, string][] = [
      [{}, 'body.email'],
      [{ email: 'not an address' }, 'body.email'],
      [{ email: uniqueEmail('x'), reason: '' }, 'body.reason'],
      [{ email: uniqueEmail('x'), reason: 'r'.repeat(501) }, 'body.reason'],
      [{ email: uniqueEmail('x'), force: true }, 'body.force'],
    ];
    for (const [body, field] of cases) {
      const response = await operatorDeactivate(body);
      expect(response.status).toBe(400);
      expect(response.body.error.details.map((detail: { field: string }) => detail.field)).toContain(field);
    }
  });
});

(process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record operator histories', () => {

  const save = (name: string, workflowId: string) => recordHistory(harness.temporal, harness.config.temporal.address, name, workflowId);

  test('record operator deactivation', async () => {
    const email = uniqueEmail('history-leaver');
    const second = await otherAccount();
    const { userId } = await harness.addMember(email, ['meter_viewer']);
    await memberKey(second.accountId, second.productionId, email, ['meter_viewer']);
    await memberKey(second.accountId, second.sandboxId, email, ['administrator']);
    await harness.db('memberships')
      .where({ environment_id: second.sandboxId })
      .whereNot({ user_id: userId })
      .update({ status: 'deactivated' });

    const response = await operatorDeactivate({ email, reason: 'recorded history' });
    expect(response.status).toBe(200);
    await save('operator-deactivation', response.body.workflowId);
    await save('deactivation-by-operator', `deactivate-${second.accountId}-production-${userId}`);
  });
});
