import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { eventually, startHarness, uniqueId, type Harness } from './support/harness.js';

let harness: Harness;

/** An account of this file's own, so its sandbox lists only the members created below. */
let accountId: string;
let environmentId: string;
let adminKey: string;

/** Added to every local part, because email addresses are unique across the whole database. */
const tag = randomBytes(4).toString('hex');
const address = (name: string, domain = 'example.com') => `${name}.${tag}@${domain}`;

/** The account's members by name, in the expected list order (by normalized email). */
const members = {
  admin: address('admin'),
  amy: address('amy'),
  bob: address('Bob', 'Example.com'),
  carol: address('carol'),
  dan: address('dan'),
  erin: address('erin'),
  fayUnderscore: address('fay_x'),
  fayZ: address('fayzx'),
};
type MemberName = keyof typeof members;
const allNames = Object.keys(members) as MemberName[];

function usersPath(): string {
  return `/v1/accounts/${accountId}/environments/sandbox/users`;
}

function list(query: Record<string, string | number | string[]> = {}) {
  return harness.api.get(usersPath()).set('Authorization', `Bearer ${adminKey}`).query(query);
}

function invite(email: string, roles: string[]) {
  return harness.api.post(usersPath()).set('Authorization', `Bearer ${adminKey}`).send({ email, roles });
}

async function activeMember(email: string, roles: string[]): Promise<string> {
  const { membershipId } = await ensureActiveMember(harness.db, { accountId, environmentId, email, roles });
  return membershipId;
}

/** Waits until the workflow has recorded the first email, so later reads of the invitation do not change. */
async function waitForFirstEmail(email: string): Promise<void> {
  await eventually(async () => {
    const row = await harness.db('invitations').where({ email_normalized: email.toLowerCase() }).first('last_sent_at');
    return row?.last_sent_at ?? undefined;
  }, 20_000, `first email to ${email}`);
}

function emailsOf(body: { data: { email: string }[] }): string[] {
  return body.data.map((member) => member.email);
}

function emailsNamed(...names: MemberName[]): string[] {
  return names.map((name) => members[name]);
}

beforeAll(async () => {
  harness = await startHarness();

  accountId = uniqueId('list');
  await createAccount(harness.db, { id: accountId, name: `Account ${accountId}`, environments: ['sandbox'] });
  environmentId = (await findEnvironment(harness.db, accountId, 'sandbox'))!.id;
  const admin = await ensureActiveMember(harness.db, { accountId, environmentId, email: members.admin, roles: ['administrator'] });
  ({ key: adminKey } = await createApiKey(harness.db, { userId: admin.userId, accountId, environmentId, name: 'list test key' }));

  await activeMember(members.amy, ['customer_viewer']);
  await activeMember(members.dan, ['user_administrator', 'customer_viewer']);
  const erinMembershipId = await activeMember(members.erin, ['customer_viewer']);
  await harness.db('memberships').where({ id: erinMembershipId }).update({ status: 'deactivated' });
  await activeMember(members.fayZ, ['invoice_viewer']);

  for (const [email, roles] of [
    [members.bob, ['customer_viewer', 'invoice_viewer']],
    [members.carol, ['meter_viewer']],
    [members.fayUnderscore, ['invoice_viewer']],
  ] as const) {
    const response = await invite(email, [...roles]);
    if (response.status !== 202) {
      throw new Error(`inviting ${email} returned ${response.status}: ${response.text}`);
    }
    await waitForFirstEmail(email);
  }

  const fay = await list({ q: members.fayUnderscore });
  const revoked = await harness.api
    .post(`${usersPath()}/${fay.body.data[0].id}/invitation/revoke`)
    .set('Authorization', `Bearer ${adminKey}`);
  if (revoked.status !== 200) {
    throw new Error(`revoking ${members.fayUnderscore} returned ${revoked.status}: ${revoked.text}`);
  }
  await harness.temporal.workflow.getHandle(revoked.body.invitation.workflowId).result();
});

afterAll(async () => {
  await harness?.close();
});

describe('list users', () => {
  test('lists every member by email', async () => {
    const response = await list({ limit: 200 });

    expect(response.status).toBe(200);
    expect(emailsOf(response.body)).toEqual(emailsNamed(...allNames));
    expect(response.body.nextCursor).toBeNull();
  });

  test('stores the email as typed', async () => {
    const response = await list({ q: members.bob });

    expect(emailsOf(response.body)).toEqual([members.bob]);
    expect(members.bob).not.toBe(members.bob.toLowerCase());
  });

  test.each([
    { status: 'active', names: ['admin', 'amy', 'dan', 'fayZ'] as MemberName[] },
    { status: 'invited', names: ['bob', 'carol'] as MemberName[] },
    { status: 'deactivated', names: ['erin'] as MemberName[] },
    { status: 'revoked', names: ['fayUnderscore'] as MemberName[] },
    { status: 'expired', names: [] as MemberName[] },
  ])('status $status filters', async ({ status, names }) => {
    const response = await list({ status });

    expect(response.status).toBe(200);
    expect(emailsOf(response.body)).toEqual(emailsNamed(...names));
    expect(response.body.data.every((member: { status: string }) => member.status === status)).toBe(true);
  });

  test.each([
    { role: 'customer_viewer', names: ['amy', 'bob', 'dan', 'erin'] as MemberName[] },
    { role: 'invoice_viewer', names: ['bob', 'fayUnderscore', 'fayZ'] as MemberName[] },
    { role: 'administrator', names: ['admin'] as MemberName[] },
    { role: 'no_such_role', names: [] as MemberName[] },
  ])('role $role filters', async ({ role, names }) => {
    const response = await list({ role });

    expect(response.status).toBe(200);
    expect(emailsOf(response.body)).toEqual(emailsNamed(...names));
  });

  test('role and status combine', async () => {
    const response = await list({ role: 'customer_viewer', status: 'active' });

    expect(emailsOf(response.body)).toEqual(emailsNamed('amy', 'dan'));
  });

  test.each([
    { name: 'lower-case prefix', q: 'a', names: ['admin', 'amy'] as MemberName[] },
    { name: 'upper-case prefix', q: 'BOB', names: ['bob'] as MemberName[] },
    { name: 'whole address upper-case', q: members.carol.toUpperCase(), names: ['carol'] as MemberName[] },
    { name: 'prefix not at start', q: 'my', names: [] as MemberName[] },
    { name: 'underscore is literal', q: 'fay_', names: ['fayUnderscore'] as MemberName[] },
    { name: 'percent is literal', q: 'fay%', names: [] as MemberName[] },
    { name: 'lone percent', q: '%', names: [] as MemberName[] },
    { name: 'lone underscore', q: '_', names: [] as MemberName[] },
    { name: 'backslash is literal', q: 'fay\\', names: [] as MemberName[] },
  ])('q $name', async ({ q, names }) => {
    const response = await list({ q });

    expect(response.status).toBe(200);
    expect(emailsOf(response.body)).toEqual(emailsNamed(...names));
  });

  test('get matches list item', async () => {
    const listed = await list({ limit: 200 });
    expect(listed.body.data).toHaveLength(allNames.length);

    for (const item of listed.body.data) {
      const response = await harness.api.get(`${usersPath()}/${item.id}`).set('Authorization', `Bearer ${adminKey}`);
      expect(response.status).toBe(200);
      expect(response.body).toEqual(item);
    }
  });

  test('item has documented fields', async () => {
    const response = await list({ q: members.bob });
    const [bob] = response.body.data;

    expect(Object.keys(bob).sort()).toEqual(
      ['activatedAt', 'createdAt', 'email', 'id', 'invitation', 'invitedAt', 'membershipId', 'roles', 'status', 'updatedAt'].sort(),
    );
    expect(bob.roles).toEqual(['customer_viewer', 'invoice_viewer']);
    expect(bob.status).toBe('invited');
    expect(bob.invitation.status).toBe('pending');
    expect(bob.activatedAt).toBeNull();
    expect(typeof bob.invitedAt).toBe('string');
  });

  test('active bootstrapped member has no invitation', async () => {
    const response = await list({ q: members.amy });
    const [amy] = response.body.data;

    expect(amy.invitation).toBeNull();
    expect(amy.status).toBe('active');
    expect(typeof amy.activatedAt).toBe('string');
  });
});

describe('pagination', () => {
  /** Follows nextCursor from the first page. Stops after `maxPages`, so a cursor that never ends fails the test. */
  async function walk(query: Record<string, string | number>, maxPages = 20) {
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const response = await list(cursor === null ? query : { ...query, cursor });
      expect(response.status).toBe(200);
      pages.push(emailsOf(response.body));
      cursor = response.body.nextCursor;
    } while (cursor !== null && pages.length < maxPages);
    return { pages, lastCursor: cursor };
  }

  test('limit 2 walks every page', async () => {
    const { pages, lastCursor } = await walk({ limit: 2 });
    const emails = pages.flat();

    expect(lastCursor).toBeNull();
    expect(pages.map((page) => page.length)).toEqual([2, 2, 2, 2]);
    expect(new Set(emails).size).toBe(emails.length);
    expect(emails).toEqual(emailsNamed(...allNames));
  });

  test('limit 3 ends on short page', async () => {
    const { pages, lastCursor } = await walk({ limit: 3 });

    expect(lastCursor).toBeNull();
    expect(pages.map((page) => page.length)).toEqual([3, 3, 2]);
    expect(pages.flat()).toEqual(emailsNamed(...allNames));
  });

  test('filtered walk keeps the filter', async () => {
    const { pages, lastCursor } = await walk({ status: 'active', limit: 1 });

    expect(lastCursor).toBeNull();
    expect(pages).toEqual([[members.admin], [members.amy], [members.dan], [members.fayZ]]);
  });

  test('full page has no cursor', async () => {
    const response = await list({ limit: allNames.length });

    expect(response.body.data).toHaveLength(allNames.length);
    expect(response.body.nextCursor).toBeNull();
  });
});

describe('list with bad query', () => {
  test.each<{ name: string; query: Record<string, string | string[]>; field: string }>([
    { name: 'limit 0', query: { limit: '0' }, field: 'query.limit' },
    { name: 'limit 201', query: { limit: '201' }, field: 'query.limit' },
    { name: 'limit abc', query: { limit: 'abc' }, field: 'query.limit' },
    { name: 'limit 1.5', query: { limit: '1.5' }, field: 'query.limit' },
    { name: 'cursor not base64 JSON', query: { cursor: 'not-a-cursor' }, field: 'query.cursor' },
    { name: 'cursor of wrong shape', query: { cursor: Buffer.from('["a","b"]').toString('base64url') }, field: 'query.cursor' },
    { name: 'status unknown', query: { status: 'sleeping' }, field: 'query.status' },
    { name: 'status repeated', query: { status: ['active', 'invited'] }, field: 'query.status' },
    { name: 'q empty', query: { q: '' }, field: 'query.q' },
    { name: 'unknown parameter', query: { sort: 'email' }, field: 'query.sort' },
  ])('$name is 400', async ({ query, field }) => {
    const response = await list(query);

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('validation_failed');
    expect(response.body.error.details.map((problem: { field: string }) => problem.field)).toEqual([field]);
  });

  // Postgres cannot store a NUL byte in text, so the API must reject it before any query.
  test.each<{ name: string; query: Record<string, string> }>([
    { name: 'q', query: { q: 'a\u0000' } },
    { name: 'role', query: { role: 'customer\u0000viewer' } },
  ])('$name with NUL is 400', async ({ query }) => {
    const response = await list(query);

    expect(response.status).toBe(400);
  });

  test('unknown parameter is named', async () => {
    const response = await list({ sort: 'email' });

    expect(response.body.error.details[0]).toEqual({ field: 'query.sort', rule: 'is not a known field' });
  });

  test('limit 1.5 says whole number', async () => {
    const response = await list({ limit: '1.5' });

    expect(response.body.error.details[0].rule).toBe('must be a whole number');
  });
});

describe('list after email change', () => {
  /**
   * Members of a second environment of the account, so that changing their emails leaves the sandbox
   * list above alone. Gus is also a member of a third environment.
   */
  const stagingMembers = {
    admin: members.admin,
    ann: address('ann'),
    ben: address('ben'),
    cat: address('cat'),
    dee: address('dee'),
    gus: address('gus'),
  };
  let stagingKey: string;
  const environmentIds: Record<string, string> = {};

  function listStaging(query: Record<string, string | number> = {}) {
    return harness.api
      .get(`/v1/accounts/${accountId}/environments/staging/users`)
      .set('Authorization', `Bearer ${stagingKey}`)
      .query(query);
  }

  async function setEmail(oldEmail: string, newEmail: string): Promise<void> {
    const updated = await harness.db('users').where({ email_normalized: oldEmail.toLowerCase() }).update({ email: newEmail });
    expect(updated).toBe(1);
  }

  async function membershipEmails(email: string): Promise<Record<string, string>> {
    const rows = await harness.db('memberships')
      .join('users', 'users.id', 'memberships.user_id')
      .where('users.email_normalized', email.toLowerCase())
      .select('memberships.environment_id', 'memberships.email_normalized');
    return Object.fromEntries(rows.map((row) => [row.environment_id, row.email_normalized]));
  }

  beforeAll(async () => {
    await createAccount(harness.db, { id: accountId, name: `Account ${accountId}`, environments: ['staging', 'testing'] });
    for (const name of ['staging', 'testing']) {
      environmentIds[name] = (await findEnvironment(harness.db, accountId, name))!.id;
    }
    const stagingId = environmentIds.staging!;

    const admin = await ensureActiveMember(harness.db, { accountId, environmentId: stagingId, email: stagingMembers.admin, roles: ['administrator'] });
    ({ key: stagingKey } = await createApiKey(harness.db, { userId: admin.userId, accountId, environmentId: stagingId, name: 'staging list key' }));
    for (const email of [stagingMembers.ann, stagingMembers.ben, stagingMembers.cat, stagingMembers.dee, stagingMembers.gus]) {
      await ensureActiveMember(harness.db, { accountId, environmentId: stagingId, email, roles: ['customer_viewer'] });
    }
    await ensureActiveMember(harness.db, { accountId, environmentId: environmentIds.testing!, email: stagingMembers.gus, roles: ['customer_viewer'] });
  });

  test('new membership copies user email', async () => {
    const emails = await membershipEmails(stagingMembers.gus);

    expect(emails).toEqual({ [environmentIds.staging!]: stagingMembers.gus, [environmentIds.testing!]: stagingMembers.gus });
  });

  test('membership email follows user email', async () => {
    const newEmail = address('Gil', 'Example.COM');
    await setEmail(stagingMembers.gus, newEmail);

    const emails = await membershipEmails(newEmail);
    expect(emails).toEqual({ [environmentIds.staging!]: newEmail.toLowerCase(), [environmentIds.testing!]: newEmail.toLowerCase() });
    expect(await membershipEmails(stagingMembers.gus)).toEqual({});

    const listed = await listStaging({ q: newEmail });
    expect(emailsOf(listed.body)).toEqual([newEmail]);
    expect(emailsOf((await listStaging({ q: stagingMembers.gus })).body)).toEqual([]);
  });

  test('order and cursor follow email change', async () => {
    const gil = address('Gil', 'Example.COM');
    const first = await listStaging({ limit: 2 });
    expect(emailsOf(first.body)).toEqual([stagingMembers.admin, stagingMembers.ann]);
    const cursor = first.body.nextCursor as string;

    // Ann moves to the end of the list, and Ben to its start, before the cursor, so the next pages skip him.
    const zed = address('Zed');
    const aaron = address('aaron');
    await setEmail(stagingMembers.ann, zed);
    await setEmail(stagingMembers.ben, aaron);

    const all = await listStaging({ limit: 200 });
    expect(emailsOf(all.body)).toEqual([aaron, stagingMembers.admin, stagingMembers.cat, stagingMembers.dee, gil, zed]);

    const second = await listStaging({ limit: 2, cursor });
    expect(emailsOf(second.body)).toEqual([stagingMembers.cat, stagingMembers.dee]);
    const third = await listStaging({ limit: 2, cursor: second.body.nextCursor });
    expect(emailsOf(third.body)).toEqual([gil, zed]);
    expect(third.body.nextCursor).toBeNull();
  });
});
