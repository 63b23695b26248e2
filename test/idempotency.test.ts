import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness();
});

afterAll(async () => {
  await harness?.close();
});

function usersPath(): string {
  return `/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`;
}

function newKey(): string {
  return `invite-${randomBytes(8).toString('hex')}`;
}

function inviteWithKey(idempotencyKey: string, body: unknown, apiKey = harness.seed.adminKey) {
  return harness.api
    .post(usersPath())
    .set('Authorization', `Bearer ${apiKey}`)
    .set('Idempotency-Key', idempotencyKey)
    .send(body as object);
}

async function invitationCount(email: string): Promise<number> {
  const [row] = await harness.db('invitations').where({ email_normalized: email.toLowerCase() }).count({ count: '*' });
  return Number(row?.count);
}

async function storedKeyCount(idempotencyKey: string): Promise<number> {
  const [row] = await harness.db('idempotency_keys').where({ key: idempotencyKey }).count({ count: '*' });
  return Number(row?.count);
}

/** Waits for the first email, then one more second, so a late duplicate would be counted too. */
async function settledDeliveries(email: string): Promise<number> {
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length >= 1);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  return harness.sendgrid.deliveredTo(email).length;
}

describe('Idempotency-Key on invite', () => {
  test('repeat replays first response', async () => {
    const key = newKey();
    const email = uniqueEmail('replayed');
    const body = { email, roles: ['customer_viewer'] };

    const first = await inviteWithKey(key, body);
    const second = await inviteWithKey(key, body);

    expect(first.status).toBe(202);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(second.status).toBe(202);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body).toEqual(first.body);
    expect(await invitationCount(email)).toBe(1);
    expect(await storedKeyCount(key)).toBe(1);
    expect(await settledDeliveries(email)).toBe(1);
  });

  test('replay ignores later changes', async () => {
    const key = newKey();
    const email = uniqueEmail('stale');
    const body = { email, roles: ['customer_viewer'] };
    const first = await inviteWithKey(key, body);
    expect(first.status).toBe(202);

    await harness.db('memberships').where({ id: first.body.membershipId }).update({ status: 'active' });
    const second = await inviteWithKey(key, body);

    // The stored response comes back even though a fresh request would now be 409 already_member.
    expect(second.status).toBe(202);
    expect(second.body).toEqual(first.body);
    expect(second.headers['idempotent-replayed']).toBe('true');
  });

  test('other body is 422', async () => {
    const key = newKey();
    const email = uniqueEmail('first-body');
    const otherEmail = uniqueEmail('other-body');
    expect((await inviteWithKey(key, { email, roles: ['customer_viewer'] })).status).toBe(202);

    const sameEmailOtherRoles = await inviteWithKey(key, { email, roles: ['meter_viewer'] });
    const otherEmailResponse = await inviteWithKey(key, { email: otherEmail, roles: ['customer_viewer'] });

    expect(sameEmailOtherRoles.status).toBe(422);
    expect(sameEmailOtherRoles.body.error.code).toBe('idempotency_key_reused');
    expect(otherEmailResponse.status).toBe(422);
    expect(otherEmailResponse.body.error.code).toBe('idempotency_key_reused');
    expect(await invitationCount(otherEmail)).toBe(0);
    expect(await harness.db('users').where({ email_normalized: otherEmail }).first()).toBeUndefined();
  });

  test('key is scoped to API key', async () => {
    const key = newKey();
    const { key: otherApiKey } = await harness.addMember(uniqueEmail('second-admin'), ['administrator']);
    const email = uniqueEmail('scoped');
    const otherEmail = uniqueEmail('scoped-other');
    expect((await inviteWithKey(key, { email, roles: ['customer_viewer'] })).status).toBe(202);

    const response = await inviteWithKey(key, { email: otherEmail, roles: ['customer_viewer'] }, otherApiKey);

    expect(response.status).toBe(202);
    expect(response.headers['idempotent-replayed']).toBeUndefined();
    expect(response.body.email).toBe(otherEmail);
    expect(await storedKeyCount(key)).toBe(2);
  });

  test('validation failure stores no key', async () => {
    const key = newKey();
    const email = uniqueEmail('fixed-role');

    const rejected = await inviteWithKey(key, { email, roles: ['no_such_role'] });
    expect(rejected.status).toBe(400);
    expect(await storedKeyCount(key)).toBe(0);

    const fixed = await inviteWithKey(key, { email, roles: ['customer_viewer'] });
    expect(fixed.status).toBe(202);
    expect(fixed.headers['idempotent-replayed']).toBeUndefined();
    expect(await storedKeyCount(key)).toBe(1);
    expect(await invitationCount(email)).toBe(1);
  });

  test('conflict inside handler frees key', async () => {
    const key = newKey();
    const memberEmail = uniqueEmail('already-member');
    await harness.addMember(memberEmail, ['meter_viewer']);

    const conflict = await inviteWithKey(key, { email: memberEmail, roles: ['customer_viewer'] });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe('already_member');
    expect(await storedKeyCount(key)).toBe(0);

    const email = uniqueEmail('after-conflict');
    const fixed = await inviteWithKey(key, { email, roles: ['customer_viewer'] });
    expect(fixed.status).toBe(202);
    expect(fixed.body.email).toBe(email);
    expect(await storedKeyCount(key)).toBe(1);
  });

  test('concurrent repeats invite once', async () => {
    const key = newKey();
    const email = uniqueEmail('concurrent');
    const body = { email, roles: ['customer_viewer'] };

    const responses = await Promise.all(Array.from({ length: 5 }, () => inviteWithKey(key, body)));

    // Each repeat arrives either while the first runs (409 in progress) or after it (the replay).
    const outcomes = responses.map((response) => (response.status === 202 ? 'accepted' : response.body.error?.code));
    expect(outcomes.filter((outcome) => outcome !== 'accepted' && outcome !== 'idempotency_key_in_progress')).toEqual([]);
    expect(outcomes).toContain('accepted');
    const accepted = responses.filter((response) => response.status === 202);
    expect(accepted.filter((response) => response.headers['idempotent-replayed'] === undefined)).toHaveLength(1);
    expect(await invitationCount(email)).toBe(1);
    expect(await settledDeliveries(email)).toBe(1);
  });

  test.each([
    { name: 'of 256 characters', idempotencyKey: 'k'.repeat(256) },
    { name: 'with a space', idempotencyKey: 'has space' },
    { name: 'with a tab', idempotencyKey: 'has\ttab' },
  ])('key $name is 400', async ({ idempotencyKey }) => {
    const email = uniqueEmail('bad-key');

    const response = await inviteWithKey(idempotencyKey, { email, roles: ['customer_viewer'] });

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('validation_failed');
    expect(response.body.error.details).toEqual([{ field: 'header.Idempotency-Key', rule: 'must be 1 to 255 printable ASCII characters' }]);
    expect(await invitationCount(email)).toBe(0);
    expect(await storedKeyCount(idempotencyKey)).toBe(0);
  });

  test('key of 255 characters works', async () => {
    const key = `${newKey()}-`.padEnd(255, 'k');
    const email = uniqueEmail('long-key');

    const response = await inviteWithKey(key, { email, roles: ['customer_viewer'] });

    expect(response.status).toBe(202);
    expect(await storedKeyCount(key)).toBe(1);
  });
});
