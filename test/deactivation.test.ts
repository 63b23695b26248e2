import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';

import { createMemberChangeActivities, type DeactivationResult } from '../activities/member-changes.js';
import { deactivatedMemberSchema, deactivationPreviewSchema } from '../api/routes/member-changes.js';
import { memberSchema } from '../api/schemas.js';
import { createAccount, findEnvironment } from '../db/bootstrap.js';
import { hashPassword } from '../lib/passwords.js';
import { tokenIn, type ReceivedMail } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { recordHistory } from './support/histories.js';
import { lockRow, waitForBlockedStatement } from './support/table-locks.js';

let harness: Harness;
let activities: ReturnType<typeof createMemberChangeActivities>;
const PASSWORD = 'a deactivation test password';

beforeAll(async () => {
  harness = await startHarness();
  activities = createMemberChangeActivities(harness.activityDependencies());
});

afterAll(async () => {
  await harness?.close();
});

function usersPath(environment = 'sandbox'): string {
  return `/v1/accounts/${harness.seed.accountId}/environments/${environment}/users`;
}

function post(key: string, path: string) {
  return harness.api.post(path).set('Authorization', `Bearer ${key}`);
}

function deactivate(key: string, userId: string, environment = 'sandbox') {
  return post(key, `${usersPath(environment)}/${userId}/deactivate`);
}

function reactivate(key: string, userId: string, environment = 'sandbox') {
  return post(key, `${usersPath(environment)}/${userId}/reactivate`);
}

function preview(key: string, userId: string) {
  return harness.api.get(`${usersPath()}/${userId}/deactivation-preview`).set('Authorization', `Bearer ${key}`);
}

function listUsers(credential: string, environment = 'sandbox') {
  return harness.api.get(usersPath(environment)).set('Authorization', `Bearer ${credential}`);
}

function textOf(mail: ReceivedMail): string {
  return mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
}

async function invite(email: string, roles: string[]) {
  const response = await post(harness.seed.adminKey, usersPath()).send({ email, roles });
  expect(response.status).toBe(202);
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
  return { userId: response.body.id as string, invitationWorkflowId: response.body.invitation.workflowId as string, token: tokenIn(harness.sendgrid.deliveredTo(email)[0]!) };
}

/** Adds an active member with an API key, a password and a signed-in session. */
async function signedInMember(roles: string[]) {
  const email = uniqueEmail('member');
  const { userId, key } = await harness.addMember(email, roles);
  await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
  const login = await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD });
  expect(login.status).toBe(200);
  return { email, userId, key, session: login.body.token as string };
}

async function auditEvents(userId: string, action: string) {
  return harness.db('audit_events').where({ target_user_id: userId, action }).orderBy('id');
}

async function freshEnvironment(): Promise<{ name: string; id: string }> {
  const name = uniqueId('env');
  await createAccount(harness.db, { id: harness.seed.accountId, name: 'unused', environments: [name] });
  return { name, id: (await findEnvironment(harness.db, harness.seed.accountId, name))!.id };
}

async function activeAdministrators(environmentId: string): Promise<string[]> {
  return harness.db('memberships')
    .join('membership_roles', 'membership_roles.membership_id', 'memberships.id')
    .where({ 'memberships.environment_id': environmentId, 'memberships.status': 'active', 'membership_roles.role_key': 'administrator' })
    .pluck('memberships.user_id');
}

describe('deactivation', () => {
  test('session and API key rejected', async () => {
    const member = await signedInMember(['user_administrator', 'invoice_viewer']);
    expect((await listUsers(member.key)).status).toBe(200);
    expect((await listUsers(member.session)).status).toBe(200);

    const previewed = await preview(harness.seed.adminKey, member.userId);
    expect(previewed.status).toBe(200);
    expect(previewed.body).toMatchObject({ userId: member.userId, status: 'active', blockers: [] });
    expect(previewed.body.impact).toEqual({ sessions: 1, apiKeys: 1, pendingInvitations: 0, ssoOnboardings: 0 });
    expect(deactivationPreviewSchema.safeParse(previewed.body).error).toBeUndefined();

    const response = await deactivate(harness.seed.adminKey, member.userId);
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('deactivated');
    expect(response.body.roles).toEqual(['invoice_viewer', 'user_administrator']);
    expect(memberSchema.safeParse(response.body).error).toBeUndefined();
    expect(response.body.deactivation.impact).toEqual(previewed.body.impact);
    expect(response.body.deactivation.workflowId).toBe(`deactivate-${harness.seed.accountId}-sandbox-${member.userId}`);
    expect(deactivatedMemberSchema.safeParse(response.body).error).toBeUndefined();

    const byKey = await listUsers(member.key);
    expect(byKey.status).toBe(401);
    const bySession = await listUsers(member.session);
    expect(bySession.status).toBe(401);

    const [event, ...others] = await auditEvents(member.userId, 'membership.deactivated');
    expect(others).toHaveLength(0);
    expect(event.actor_user_id).toBe(harness.seed.adminUserId);
    expect(event.workflow_id).toBe(response.body.deactivation.workflowId);
    expect(event.details).toMatchObject({ statusBefore: 'active', impact: previewed.body.impact });
    const membership = await harness.db('memberships').where({ user_id: member.userId, environment_id: harness.seed.sandboxId }).first();
    expect(membership.status_before_deactivation).toBe('active');
    expect(membership.deactivated_by_user_id).toBe(harness.seed.adminUserId);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(member.email).length === 1);
    const [notice] = harness.sendgrid.deliveredTo(member.email);
    expect(notice!.body.subject).toBe(`Your access to Account ${harness.seed.accountId} (sandbox) was deactivated`);
  });

  test('invited member link dies', async () => {
    const email = uniqueEmail('invited');
    const { userId, invitationWorkflowId, token } = await invite(email, ['customer_viewer']);

    const previewed = await preview(harness.seed.adminKey, userId);
    expect(previewed.body.impact).toEqual({ sessions: 0, apiKeys: 0, pendingInvitations: 1, ssoOnboardings: 0 });

    const response = await deactivate(harness.seed.adminKey, userId);
    expect(response.status).toBe(200);
    expect(response.body.deactivation.impact).toEqual(previewed.body.impact);
    expect(response.body.invitation.status).toBe('revoked');

    const outcome = await harness.temporal.workflow.getHandle(invitationWorkflowId).result();
    expect(outcome.outcome).toBe('revoked');

    const accept = await harness.api.post('/v1/invitations/accept').send({ token, password: 'this link was revoked' });
    expect(accept.status).toBe(410);
    const invitation = await harness.db('invitations').where({ id: response.body.invitation.id }).first();
    expect(invitation.token_hash).toBeNull();

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    expect(harness.sendgrid.deliveredTo(email)[1]!.body.subject).toContain('was withdrawn');
  });

  test('self-deactivation refused', async () => {
    const response = await deactivate(harness.seed.adminKey, harness.seed.adminUserId);
    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('self_deactivation');
    const previewed = await preview(harness.seed.adminKey, harness.seed.adminUserId);
    expect(previewed.body.blockers).toContain('self');
    expect((await listUsers(harness.seed.adminKey)).status).toBe(200);
  });

  test('administrator needs administrator', async () => {
    const manager = await harness.addMember(uniqueEmail('manager'), ['user_administrator']);
    const administrator = await harness.addMember(uniqueEmail('admin'), ['administrator']);
    const response = await deactivate(manager.key, administrator.userId);
    expect(response.status).toBe(403);
    expect((await preview(manager.key, administrator.userId)).body.blockers).toEqual(['administrator_required']);

    const plain = await harness.addMember(uniqueEmail('plain'), ['meter_viewer']);
    expect((await deactivate(manager.key, plain.userId)).status).toBe(200);
    expect((await reactivate(manager.key, plain.userId)).status).toBe(200);

    expect((await deactivate(harness.seed.adminKey, administrator.userId)).status).toBe(200);
    const reactivation = await reactivate(manager.key, administrator.userId);
    expect(reactivation.status).toBe(403);
    expect(reactivation.body.error.code).toBe('forbidden');
  });

  test('repeat and unknown member', async () => {
    const { userId } = await harness.addMember(uniqueEmail('twice'), ['meter_viewer']);
    expect((await deactivate(harness.seed.adminKey, userId)).status).toBe(200);
    const again = await deactivate(harness.seed.adminKey, userId);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('member_status_conflict');
    expect((await preview(harness.seed.adminKey, userId)).body.blockers).toEqual(['not_deactivatable']);
    expect(await auditEvents(userId, 'membership.deactivated')).toHaveLength(1);

    expect((await deactivate(harness.seed.adminKey, randomUUID())).status).toBe(404);
    expect((await deactivate(harness.seed.adminKey, 'nobody')).status).toBe(404);
    expect((await preview(harness.seed.adminKey, randomUUID())).status).toBe(404);
    const withBody = await deactivate(harness.seed.adminKey, userId).send({ force: true });
    expect(withBody.status).toBe(400);
  });

  test('idempotency key replays response', async () => {
    const { userId } = await harness.addMember(uniqueEmail('idempotent'), ['meter_viewer']);
    const key = randomUUID();
    const first = await deactivate(harness.seed.adminKey, userId).set('Idempotency-Key', key);
    const second = await deactivate(harness.seed.adminKey, userId).set('Idempotency-Key', key);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body).toEqual(first.body);
  });
});

describe('reactivation', () => {
  test('reactivation restores roles', async () => {
    const member = await signedInMember(['invoice_viewer', 'user_administrator']);
    expect((await deactivate(harness.seed.adminKey, member.userId)).status).toBe(200);

    const response = await reactivate(harness.seed.adminKey, member.userId);
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('active');
    expect(response.body.roles).toEqual(['invoice_viewer', 'user_administrator']);
    expect(memberSchema.safeParse(response.body).error).toBeUndefined();

    // The session was never revoked, only refused while deactivated; the API key stays revoked.
    expect((await listUsers(member.session)).status).toBe(200);
    expect((await listUsers(member.key)).status).toBe(401);
    const membership = await harness.db('memberships').where({ user_id: member.userId, environment_id: harness.seed.sandboxId }).first();
    expect(membership.status_before_deactivation).toBeNull();
    expect(membership.deactivated_at).toBeNull();

    const [event] = await auditEvents(member.userId, 'membership.reactivated');
    expect(event.details).toMatchObject({ to: 'active', roles: ['invoice_viewer', 'user_administrator'] });
    expect(event.workflow_id).toBe(`reactivate-${harness.seed.accountId}-sandbox-${member.userId}`);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(member.email).length === 2);
    const notice = harness.sendgrid.deliveredTo(member.email)[1]!;
    expect(notice.body.subject).toContain('is restored');
    expect(textOf(notice)).toContain('Invoice Viewer, User Administrator');

    const again = await reactivate(harness.seed.adminKey, member.userId);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('member_status_conflict');
  });

  test('never-accepted member invited again', async () => {
    const email = uniqueEmail('never');
    const first = await invite(email, ['customer_viewer', 'meter_viewer']);
    const deactivated = await deactivate(harness.seed.adminKey, first.userId);
    expect(deactivated.status).toBe(200);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);

    const response = await reactivate(harness.seed.adminKey, first.userId);
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('invited');
    expect(response.body.roles).toEqual(['customer_viewer', 'meter_viewer']);
    expect(response.body.invitation.status).toBe('pending');
    expect(response.body.invitation.id).not.toBe(deactivated.body.invitation.id);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 3);
    const fresh = harness.sendgrid.deliveredTo(email)[2]!;
    expect(fresh.body.categories).toEqual(['invitation-invitation']);
    const accepted = await harness.api.post('/v1/invitations/accept').send({ token: tokenIn(fresh), password: 'the fresh link works' });
    expect(accepted.status).toBe(200);
    expect((await harness.api.post('/v1/invitations/accept').send({ token: first.token, password: 'the old link is dead' })).status).toBe(410);

    const member = await harness.api.get(`${usersPath()}/${first.userId}`).set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(member.body.status).toBe('active');
    expect(member.body.roles).toEqual(['customer_viewer', 'meter_viewer']);
    const [event] = await auditEvents(first.userId, 'membership.reactivated');
    expect(event.details).toMatchObject({ to: 'invited', invitationId: response.body.invitation.id });
  });

  test('active member reactivation 409', async () => {
    const { userId } = await harness.addMember(uniqueEmail('active'), ['meter_viewer']);
    const response = await reactivate(harness.seed.adminKey, userId);
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('member_status_conflict');
  });
});

describe('deactivation under concurrency', () => {
  test('concurrent deactivations leave one', async () => {
    for (let round = 0; round < 3; round += 1) {
      const environment = await freshEnvironment();
      const a = await harness.addMember(uniqueEmail('a'), ['administrator'], environment.id);
      const b = await harness.addMember(uniqueEmail('b'), ['administrator'], environment.id);

      const [first, second] = await Promise.all([deactivate(b.key, a.userId, environment.name), deactivate(a.key, b.userId, environment.name)]);
      const statuses = [first.status, second.status].sort();
      expect(statuses[0]).toBe(200);
      // The loser met the lock (409), or arrived after the winner's commit with a deactivated key (401).
      expect([401, 409]).toContain(statuses[1]);
      expect(await activeAdministrators(environment.id)).toHaveLength(1);
    }
  });

  test('concurrent activities leave one', async () => {
    for (let round = 0; round < 3; round += 1) {
      const environment = await freshEnvironment();
      const a = await harness.addMember(uniqueEmail('a'), ['administrator'], environment.id);
      const b = await harness.addMember(uniqueEmail('b'), ['administrator'], environment.id);
      const run = (target: string, actor: string) =>
        activityEnvironment().run(activities.deactivateMembership, {
          accountId: harness.seed.accountId,
          environmentId: environment.id,
          userId: target,
          actor: { type: 'user' as const, userId: actor },
        });

      const results = await Promise.allSettled([run(a.userId, b.userId), run(b.userId, a.userId)]);
      const rejected = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
      expect(rejected).toHaveLength(1);
      expect(rejected[0]!.reason).toMatchObject({ type: 'LastAdministrator', nonRetryable: true });
      expect(await activeAdministrators(environment.id)).toHaveLength(1);
    }
  });

  test('deactivation races acceptance', async () => {
    const acceptStatement = 'from "invitations" where "token_hash"';
    const deactivateStatement = 'select "id" from "invitations" where "membership_id"';

    for (const first of ['deactivation', 'acceptance'] as const) {
      const email = uniqueEmail(`race-${first}`);
      const { userId, invitationWorkflowId, token } = await invite(email, ['customer_viewer']);
      const { id: invitationId } = await harness.db('invitations').where({ workflow_id: invitationWorkflowId }).first('id');

      // Both requests wait on the invitation row, which the test holds, in the order they arrive.
      const lock = await lockRow(harness.db, 'invitations', invitationId);
      const sendDeactivation = () => deactivate(harness.seed.adminKey, userId).then((response) => response);
      const sendAcceptance = () => harness.api.post('/v1/invitations/accept').send({ token, password: PASSWORD }).then((response) => response);
      let deactivation;
      let acceptance;
      try {
        if (first === 'deactivation') {
          deactivation = sendDeactivation();
          await waitForBlockedStatement(harness.db, deactivateStatement);
          acceptance = sendAcceptance();
          await waitForBlockedStatement(harness.db, acceptStatement);
        } else {
          acceptance = sendAcceptance();
          await waitForBlockedStatement(harness.db, acceptStatement);
          deactivation = sendDeactivation();
          await waitForBlockedStatement(harness.db, deactivateStatement);
        }
      } finally {
        await lock.release();
      }
      const [deactivated, accepted] = await Promise.all([deactivation!, acceptance!]);

      // Either way the person ends deactivated, with no pending invitation and no working link.
      expect(deactivated.status).toBe(200);
      expect(deactivated.body.status).toBe('deactivated');
      const invitation = await harness.db('invitations').where({ id: invitationId }).first('status', 'token_hash');
      expect(invitation.token_hash).toBeNull();
      const login = await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD });
      expect(login.status).not.toBe(200);
      const outcome = (await harness.temporal.workflow.getHandle(invitationWorkflowId).result()).outcome;
      const deactivatedEvents = await auditEvents(userId, 'membership.deactivated');
      expect(deactivatedEvents).toHaveLength(1);

      if (first === 'deactivation') {
        // The acceptance lost: its link had been revoked by the time it read the row.
        expect(accepted.status).toBe(410);
        expect(accepted.body.error.code).toBe('invitation_link_invalid');
        expect(deactivated.body.deactivation.impact.pendingInvitations).toBe(1);
        expect(invitation.status).toBe('revoked');
        expect(outcome).toBe('revoked');
        expect(await auditEvents(userId, 'invitation.accepted')).toHaveLength(0);
        expect(deactivatedEvents[0].details.statusBefore).toBe('invited');
      } else {
        // The acceptance won, and the deactivation then applied to the member it had made active.
        expect(accepted.status).toBe(200);
        expect(deactivated.body.deactivation.impact.pendingInvitations).toBe(0);
        expect(invitation.status).toBe('accepted');
        expect(outcome).toBe('accepted');
        expect(await auditEvents(userId, 'invitation.accepted')).toHaveLength(1);
        expect(deactivatedEvents[0].details.statusBefore).toBe('active');
      }
    }
  });

  test('operator cannot remove last administrator', async () => {
    const environment = await freshEnvironment();
    const only = await harness.addMember(uniqueEmail('only'), ['administrator'], environment.id);
    const attempt = activityEnvironment().run(activities.deactivateMembership, {
      accountId: harness.seed.accountId,
      environmentId: environment.id,
      userId: only.userId,
      actor: { type: 'operator' as const, operatorKeyId: randomUUID() },
    });
    await expect(attempt).rejects.toMatchObject({ type: 'LastAdministrator' });
    expect(await activeAdministrators(environment.id)).toEqual([only.userId]);
  });

  test('deactivateMembership twice deactivates once', async () => {
    const member = await signedInMember(['meter_viewer']);
    const execution = { workflowId: `deactivate-test-${randomUUID()}`, runId: randomUUID() };
    const input = {
      accountId: harness.seed.accountId,
      environmentId: harness.seed.sandboxId,
      userId: member.userId,
      actor: { type: 'user' as const, userId: harness.seed.adminUserId },
    };

    const first = (await activityEnvironment(execution).run(activities.deactivateMembership, input)) as DeactivationResult;
    const second = await activityEnvironment(execution).run(activities.deactivateMembership, input);
    expect(first.impact).toEqual({ sessions: 1, apiKeys: 1, pendingInvitations: 0, ssoOnboardings: 0 });
    expect(second).toEqual(first);
    expect(await auditEvents(member.userId, 'membership.deactivated')).toHaveLength(1);
  });
});

/** Creates an activity context of one made-up workflow run, which does not log expected rejections. */
function activityEnvironment(execution = { workflowId: `member-change-test-${randomUUID()}`, runId: randomUUID() }) {
  return new MockActivityEnvironment({ workflowExecution: execution }, { logger: new DefaultLogger('ERROR') });
}

(process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record deactivation histories', () => {

  const save = (name: string, workflowId: string) => recordHistory(harness.temporal, harness.config.temporal.address, name, workflowId);

  test('record invited member deactivation', async () => {
    const { userId } = await invite(uniqueEmail('history-invited'), ['customer_viewer']);
    const response = await deactivate(harness.seed.adminKey, userId).expect(200);
    await save('deactivation-invited', response.body.deactivation.workflowId);
    // Reactivating a member who never accepted starts a fresh invitation from an activity.
    await reactivate(harness.seed.adminKey, userId).expect(200);
    await save('reactivation-invitation', `reactivate-${harness.seed.accountId}-sandbox-${userId}`);
  });

  test('record active member reactivation', async () => {
    const { userId } = await harness.addMember(uniqueEmail('history-active'), ['meter_viewer']);
    await deactivate(harness.seed.adminKey, userId).expect(200);
    await reactivate(harness.seed.adminKey, userId).expect(200);
    await save('reactivation-active', `reactivate-${harness.seed.accountId}-sandbox-${userId}`);
  });
});
