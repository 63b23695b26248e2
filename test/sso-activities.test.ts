import { randomBytes, randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MockActivityEnvironment } from '@temporalio/testing';

import { createSsoActivities, type RecordedSsoOnboarding } from '../activities/sso.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { createTestAccount } from './support/sso-app.js';

/**
 * Activities run at least once, so each one runs twice here against the real database and the fake
 * SendGrid, as Temporal would after a lost completion, and the second run must change nothing.
 */

let harness: Harness;
let activities: ReturnType<typeof createSsoActivities>;

beforeAll(async () => {
  process.env.SSO_ENCRYPTION_KEYS = `k1:${randomBytes(32).toString('base64')}`;
  process.env.OPERATOR_EMAIL = 'operators@lifecycle.test';
  harness = await startHarness({ inProcessWorker: false });
  activities = createSsoActivities(harness.activityDependencies());
});

afterAll(async () => {
  await harness?.close();
});

function workflowRun() {
  const workflowId = `sso-onboarding-test-${randomUUID()}`;
  const runId = randomUUID();
  return () => new MockActivityEnvironment({ workflowExecution: { workflowId, runId } });
}

async function recordTwice(accountId: string, contact: string) {
  const environment = workflowRun();
  const input = { accountId, contactEmail: contact, startedBy: { type: 'system' as const, userId: null }, expiresAt: new Date(Date.now() + 3_600_000).toISOString() };
  const first: RecordedSsoOnboarding = await environment().run(activities.recordSsoOnboarding, input);
  const second: RecordedSsoOnboarding = await environment().run(activities.recordSsoOnboarding, input);
  return { environment, first, second };
}

describe('sso activities', () => {
  test('record twice records once', async () => {
    const { accountId } = await createTestAccount(harness);
    const { first, second } = await recordTwice(accountId, uniqueEmail('contact'));
    expect(second).toEqual(first);
    expect(await harness.db('sso_onboardings').where({ account_id: accountId }).count({ count: '*' })).toEqual([{ count: '1' }]);
    expect(await harness.db('sso_connections').where({ account_id: accountId }).count({ count: '*' })).toEqual([{ count: '1' }]);
    expect(await harness.db('audit_events').where({ account_id: accountId, action: 'sso.onboarding.started' }).count({ count: '*' })).toEqual([{ count: '1' }]);
  });

  test('email twice sends once', async () => {
    const { accountId } = await createTestAccount(harness);
    const contact = uniqueEmail('contact');
    const { environment, first } = await recordTwice(accountId, contact);
    await environment().run(activities.sendSsoOnboardingEmail, { onboardingId: first.onboardingId, kind: 'initial' as const });
    await environment().run(activities.sendSsoOnboardingEmail, { onboardingId: first.onboardingId, kind: 'initial' as const });
    await environment().run(activities.notifySsoOperators, { onboardingId: first.onboardingId });
    await environment().run(activities.notifySsoOperators, { onboardingId: first.onboardingId });
    expect(harness.sendgrid.deliveredTo(contact)).toHaveLength(1);
    expect(
      harness.sendgrid.deliveredTo('operators@lifecycle.test').filter((mail) => mail.body.subject.includes(accountId)),
    ).toHaveLength(1);
  });

  test('end twice ends once', async () => {
    const { accountId } = await createTestAccount(harness);
    const { environment, first } = await recordTwice(accountId, uniqueEmail('contact'));
    const end = { onboardingId: first.onboardingId, status: 'cancelled' as const, actor: { type: 'system' as const, userId: null } };
    expect(await environment().run(activities.endSsoOnboarding, end)).toEqual({ status: 'cancelled' });
    expect(await environment().run(activities.endSsoOnboarding, { ...end, status: 'expired' as const })).toEqual({ status: 'cancelled' });
    const row = await harness.db('sso_onboardings').where({ id: first.onboardingId }).first();
    expect(row.token_hash).toBeNull();
    expect(await harness.db('audit_events').where({ account_id: accountId }).where('action', 'like', 'sso.onboarding.%').pluck('action')).toEqual([
      'sso.onboarding.started',
      'sso.onboarding.cancelled',
    ]);
  });

  test('activation needs tested connection', async () => {
    const { accountId } = await createTestAccount(harness);
    const { environment, first } = await recordTwice(accountId, uniqueEmail('contact'));
    const approval = { onboardingId: first.onboardingId, approvedBy: { type: 'system' as const, userId: null } };
    await expect(environment().run(activities.activateSsoConnection, approval)).rejects.toMatchObject({ type: 'SsoConnectionNotTested' });

    await harness.db('sso_connections').where({ id: first.connectionId }).update({ status: 'tested' });
    expect(await environment().run(activities.activateSsoConnection, approval)).toEqual({ status: 'completed' });
    expect(await environment().run(activities.activateSsoConnection, approval)).toEqual({ status: 'completed' });
    expect((await harness.db('sso_connections').where({ id: first.connectionId }).first()).status).toBe('active');
  });
});
