import { randomBytes, randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness();
});

afterAll(async () => {
  await harness?.close();
});

function usersPath(accountId = harness.seed.accountId, environment = 'sandbox'): string {
  return `/v1/accounts/${accountId}/environments/${environment}/users`;
}

function bearer(key: string): string {
  return `Bearer ${key}`;
}

function listUsers(key: string, accountId?: string, environment?: string) {
  return harness.api.get(usersPath(accountId, environment)).set('Authorization', bearer(key));
}

async function invitationStatus(email: string): Promise<string | undefined> {
  const row = await harness.db('invitations').where({ email_normalized: email }).first('status');
  return row?.status;
}

/** Every call on members. `key` is the caller's API key and `userId` the member acted on. */
const memberOperations = [
  {
    name: 'invite',
    send: (key: string) =>
      harness.api.post(usersPath()).set('Authorization', bearer(key)).send({ email: uniqueEmail('target'), roles: ['customer_viewer'] }),
  },
  { name: 'list', send: (key: string) => listUsers(key) },
  { name: 'get', send: (key: string, userId: string) => harness.api.get(`${usersPath()}/${userId}`).set('Authorization', bearer(key)) },
  {
    name: 'resend',
    send: (key: string, userId: string) => harness.api.post(`${usersPath()}/${userId}/invitation/resend`).set('Authorization', bearer(key)),
  },
  {
    name: 'revoke',
    send: (key: string, userId: string) => harness.api.post(`${usersPath()}/${userId}/invitation/revoke`).set('Authorization', bearer(key)),
  },
];

const operationsOnOneMember = memberOperations.filter((operation) => operation.name !== 'invite' && operation.name !== 'list');

describe('authentication', () => {
  test('missing header is 401', async () => {
    const response = await harness.api.get(usersPath());

    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="lifecycle"');
    expect(response.body.error.code).toBe('unauthorized');
  });

  const wellFormedPrefix = `lc_${'a'.repeat(12)}_`;
  test.each([
    { name: 'not a key', authorization: 'Bearer not-a-key' },
    { name: 'Basic scheme', authorization: `Basic ${Buffer.from('admin:secret').toString('base64')}` },
    { name: 'scheme without key', authorization: 'Bearer' },
    { name: 'secret one short', authorization: `Bearer ${wellFormedPrefix}${'b'.repeat(42)}` },
    { name: 'uppercase hex prefix', authorization: `Bearer lc_${'A'.repeat(12)}_${'b'.repeat(43)}` },
  ])('malformed key $name is 401', async ({ authorization }) => {
    const response = await harness.api.get(usersPath()).set('Authorization', authorization);

    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="lifecycle"');
    expect(response.body.error.code).toBe('unauthorized');
  });

  test('unknown well-formed key is 401', async () => {
    const key = `lc_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;
    expect(key).toMatch(/^lc_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);

    const response = await listUsers(key);

    expect(response.status).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="lifecycle"');
    expect(response.body.error.code).toBe('unauthorized');
  });

  test('revoked key is 401', async () => {
    const { userId, key } = await harness.addMember(uniqueEmail('revoked-key'), ['user_administrator']);
    expect((await listUsers(key)).status).toBe(200);

    await harness.db('api_keys').where({ user_id: userId }).update({ revoked_at: harness.db.fn.now() });
    const response = await listUsers(key);

    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe('unauthorized');
  });

  test('deactivated member key is 401', async () => {
    const { userId, key } = await harness.addMember(uniqueEmail('deactivated'), ['user_administrator']);
    expect((await listUsers(key)).status).toBe(200);

    await harness.db('memberships').where({ user_id: userId, environment_id: harness.seed.sandboxId }).update({ status: 'deactivated' });
    const response = await listUsers(key);

    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe('unauthorized');
  });
});

describe('tenant scope', () => {
  test('production key on sandbox is 403', async () => {
    const { key } = await harness.addMember(uniqueEmail('production-admin'), ['administrator'], harness.seed.productionId);
    expect((await listUsers(key, harness.seed.accountId, 'production')).status).toBe(200);

    const response = await listUsers(key, harness.seed.accountId, 'sandbox');

    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('forbidden');
  });

  test('other account key is 403', async () => {
    const otherAccountId = uniqueId('other');
    await createAccount(harness.db, { id: otherAccountId, name: `Account ${otherAccountId}`, environments: ['sandbox'] });
    const environment = await findEnvironment(harness.db, otherAccountId, 'sandbox');
    const { userId } = await ensureActiveMember(harness.db, {
      accountId: otherAccountId,
      environmentId: environment!.id,
      email: uniqueEmail('other-admin'),
      roles: ['administrator'],
    });
    const { key: otherKey } = await createApiKey(harness.db, { userId, accountId: otherAccountId, environmentId: environment!.id, name: 'other account key' });
    expect((await listUsers(otherKey, otherAccountId)).status).toBe(200);

    const otherOnOurs = await listUsers(otherKey, harness.seed.accountId);
    expect(otherOnOurs.status).toBe(403);
    expect(otherOnOurs.body.error.code).toBe('forbidden');

    const oursOnOther = await listUsers(harness.seed.adminKey, otherAccountId);
    expect(oursOnOther.status).toBe(403);
    expect(oursOnOther.body.error.code).toBe('forbidden');
  });

  test('unknown account is 403', async () => {
    const response = await listUsers(harness.seed.adminKey, 'no-such-account');

    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('forbidden');
  });
});

describe('roles', () => {
  let viewerKey: string;
  let pendingEmail: string;
  let pendingUserId: string;

  beforeAll(async () => {
    ({ key: viewerKey } = await harness.addMember(uniqueEmail('viewer'), ['customer_viewer']));
    pendingEmail = uniqueEmail('pending');
    const invited = await harness.api
      .post(usersPath())
      .set('Authorization', bearer(harness.seed.adminKey))
      .send({ email: pendingEmail, roles: ['customer_viewer'] });
    if (invited.status !== 202) {
      throw new Error(`inviting ${pendingEmail} returned ${invited.status}: ${invited.text}`);
    }
    pendingUserId = invited.body.id;
  });

  test.each(memberOperations)('customer_viewer $name is 403', async (operation) => {
    const response = await operation.send(viewerKey, pendingUserId);

    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('forbidden');
  });

  test('viewer leaves invitation pending', async () => {
    expect(await invitationStatus(pendingEmail)).toBe('pending');
  });

  test('user_administrator invites non-administrator', async () => {
    const { key } = await harness.addMember(uniqueEmail('user-admin'), ['user_administrator']);
    const email = uniqueEmail('invited-by-user-admin');

    const response = await harness.api
      .post(usersPath())
      .set('Authorization', bearer(key))
      .send({ email, roles: ['customer_viewer', 'invoice_contributor'] });

    expect(response.status).toBe(202);
    expect(response.body.roles).toEqual(['customer_viewer', 'invoice_contributor']);
  });

  test.each([
    { name: 'administrator alone', roles: ['administrator'] },
    { name: 'administrator among others', roles: ['customer_viewer', 'administrator'] },
  ])('user_administrator inviting $name is 403', async ({ roles }) => {
    const { key } = await harness.addMember(uniqueEmail('user-admin'), ['user_administrator']);
    const email = uniqueEmail('would-be-admin');

    const response = await harness.api.post(usersPath()).set('Authorization', bearer(key)).send({ email, roles });

    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('forbidden');
    expect(await harness.db('users').where({ email_normalized: email }).first()).toBeUndefined();
  });

  test('administrator invites administrator', async () => {
    const email = uniqueEmail('new-admin');

    const response = await harness.api
      .post(usersPath())
      .set('Authorization', bearer(harness.seed.adminKey))
      .send({ email, roles: ['administrator'] });

    expect(response.status).toBe(202);
    expect(response.body.roles).toEqual(['administrator']);
  });
});

describe('unknown members', () => {
  test.each(operationsOnOneMember)('$name of unknown UUID is 404', async (operation) => {
    const response = await operation.send(harness.seed.adminKey, randomUUID());

    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('not_found');
  });

  test.each(operationsOnOneMember)('$name of non-UUID is 404', async (operation) => {
    const response = await operation.send(harness.seed.adminKey, 'not-a-uuid');

    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('not_found');
  });

  test('member of other environment is 404', async () => {
    const { userId } = await harness.addMember(uniqueEmail('production-only'), ['meter_viewer'], harness.seed.productionId);

    const response = await harness.api.get(`${usersPath()}/${userId}`).set('Authorization', bearer(harness.seed.adminKey));

    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('not_found');
  });
});

describe('public endpoints', () => {
  test('roles lists the catalog', async () => {
    const resources = ['customer', 'subscription', 'invoice', 'meter', 'pricing_plan', 'billing_entity'];
    const resourceRoles = resources.flatMap((resource) => ['viewer', 'contributor', 'administrator'].map((level) => `${resource}_${level}`));

    const response = await harness.api.get('/v1/roles');

    expect(response.status).toBe(200);
    const keys: string[] = response.body.data.map((role: { key: string }) => role.key);
    expect(keys).toHaveLength(20);
    expect(keys.slice(0, 2)).toEqual(['administrator', 'user_administrator']);
    expect([...keys].sort()).toEqual(['administrator', 'user_administrator', ...resourceRoles].sort());
    const customerViewer = response.body.data.find((role: { key: string }) => role.key === 'customer_viewer');
    expect(customerViewer).toEqual({ key: 'customer_viewer', name: 'Customer Viewer', description: expect.any(String), resource: 'customer' });
  });

  test('healthz is 200', async () => {
    const response = await harness.api.get('/healthz');

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: 'ok' });
  });

  test('readyz is 200 with checks', async () => {
    const response = await harness.api.get('/readyz');

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: 'ok', checks: { database: 'ok', temporal: 'ok' } });
  });

  test('unknown route is 404', async () => {
    const response = await harness.api.get('/v1/no-such-route');

    expect(response.status).toBe(404);
    expect(response.body).toEqual({
      error: { code: 'not_found', message: 'No route matches GET /v1/no-such-route.', details: null },
    });
  });

  test('unknown method is 404', async () => {
    const response = await harness.api.delete(`${usersPath()}/${randomUUID()}`).set('Authorization', bearer(harness.seed.adminKey));

    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('not_found');
    expect(response.body.error.details).toBeNull();
  });
});

describe('administrator invitations', () => {
  test('user administrator cannot revoke one', async () => {
    const invited = await harness.api
      .post(usersPath())
      .set('Authorization', bearer(harness.seed.adminKey))
      .send({ email: uniqueEmail('future-admin'), roles: ['administrator'] });
    expect(invited.status).toBe(202);
    const userAdministrator = await harness.addMember(uniqueEmail('user-admin'), ['user_administrator']);

    const revoked = await harness.api.post(`${usersPath()}/${invited.body.id}/invitation/revoke`).set('Authorization', bearer(userAdministrator.key));
    expect(revoked.status).toBe(403);
    expect(revoked.body.error.code).toBe('forbidden');

    const byAdministrator = await harness.api.post(`${usersPath()}/${invited.body.id}/invitation/revoke`).set('Authorization', bearer(harness.seed.adminKey));
    expect(byAdministrator.status).toBe(200);
  });
});
