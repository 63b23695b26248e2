import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createDocument } from 'zod-openapi';

import { createMemberChangeActivities, type RoleChangeResult } from '../activities/member-changes.js';
import { memberChangePaths, memberChangeSecuritySchemes } from '../api/openapi-member-changes.js';
import { memberSchema } from '../api/schemas.js';
import { createAccount, findEnvironment } from '../db/bootstrap.js';
import { tokenIn, type ReceivedMail } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { recordHistory } from './support/histories.js';

let harness: Harness;
let activities: ReturnType<typeof createMemberChangeActivities>;

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

function putRoles(key: string, userId: string, body: unknown, environment = 'sandbox') {
  return harness.api.put(`${usersPath(environment)}/${userId}/roles`).set('Authorization', `Bearer ${key}`).send(body as object);
}

/** Creates an activity context of one made-up workflow run, which does not log expected rejections. */
function activityEnvironment(execution = { workflowId: `member-change-test-${randomUUID()}`, runId: randomUUID() }) {
  return new MockActivityEnvironment({ workflowExecution: execution }, { logger: new DefaultLogger('ERROR') });
}

function textOf(mail: ReceivedMail): string {
  return mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
}

async function roleChangeEvents(userId: string) {
  return harness.db('audit_events').where({ target_user_id: userId, action: 'membership.roles_changed' }).orderBy('id');
}

/** Creates an environment in the harness account, so that its only administrators are the ones a test adds. */
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

describe('role changes', () => {
  test('active member roles replaced', async () => {
    const email = uniqueEmail('active');
    const { userId } = await harness.addMember(email, ['customer_viewer']);

    const response = await putRoles(harness.seed.adminKey, userId, { roles: ['meter_contributor', 'invoice_viewer'] });
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('active');
    expect(response.body.roles).toEqual(['invoice_viewer', 'meter_contributor']);
    expect(memberSchema.safeParse(response.body).error).toBeUndefined();

    const [event, ...others] = await roleChangeEvents(userId);
    expect(others).toHaveLength(0);
    expect(event.actor_type).toBe('user');
    expect(event.actor_user_id).toBe(harness.seed.adminUserId);
    expect(event.environment_id).toBe(harness.seed.sandboxId);
    expect(event.workflow_id).toMatch(new RegExp(`^role-change-${harness.seed.accountId}-sandbox-${userId}-`));
    expect(event.details.before).toEqual(['customer_viewer']);
    expect(event.details.after).toEqual(['invoice_viewer', 'meter_contributor']);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const [notice] = harness.sendgrid.deliveredTo(email);
    expect(notice!.body.subject).toBe(`Your roles in Account ${harness.seed.accountId} (sandbox) changed`);
    expect(textOf(notice!)).toContain('Before: Customer Viewer');
    expect(textOf(notice!)).toContain('Now: Invoice Viewer, Meter Contributor');

    const result = await harness.temporal.workflow.getHandle(event.workflow_id).result();
    expect(result).toMatchObject({ outcome: 'changed', notice: 'sent' });
  });

  test('invited member keeps new roles', async () => {
    const email = uniqueEmail('invited');
    const invited = await harness.api
      .post(usersPath())
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email, roles: ['customer_viewer'] });
    expect(invited.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);

    const response = await putRoles(harness.seed.adminKey, invited.body.id, { roles: ['subscription_contributor'] });
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('invited');
    expect(response.body.roles).toEqual(['subscription_contributor']);
    expect(response.body.invitation.status).toBe('pending');

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    const notice = harness.sendgrid.deliveredTo(email)[1]!;
    expect(textOf(notice)).toContain('These roles apply once you accept your pending invitation.');

    const accepted = await harness.api.post('/v1/invitations/accept').send({ token, password: 'roles changed before acceptance' });
    expect(accepted.status).toBe(200);
    const member = await harness.api.get(`${usersPath()}/${invited.body.id}`).set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(member.body.status).toBe('active');
    expect(member.body.roles).toEqual(['subscription_contributor']);
  });

  test('same roles change nothing', async () => {
    const email = uniqueEmail('same');
    const { userId } = await harness.addMember(email, ['meter_viewer', 'invoice_viewer']);

    const response = await putRoles(harness.seed.adminKey, userId, { roles: ['meter_viewer', 'invoice_viewer'] });
    expect(response.status).toBe(200);
    expect(response.body.roles).toEqual(['invoice_viewer', 'meter_viewer']);
    expect(await roleChangeEvents(userId)).toHaveLength(0);

    const workflows = [];
    for await (const workflow of harness.temporal.workflow.list({ query: `WorkflowType = 'roleChangeWorkflow'` })) {
      if (workflow.workflowId.includes(userId)) {
        workflows.push(workflow);
      }
    }
    expect(workflows).toHaveLength(1);
    expect(await harness.temporal.workflow.getHandle(workflows[0]!.workflowId).result()).toMatchObject({ outcome: 'unchanged', notice: 'not_sent' });
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(0);
  });

  test('invalid role lists are 400', async () => {
    const { userId } = await harness.addMember(uniqueEmail('invalid'), ['customer_viewer']);
    const cases: [unknown, string][] = [
      [{ roles: [] }, 'body.roles'],
      [{ roles: ['no_such_role'] }, 'body.roles[0]'],
      [{ roles: ['meter_viewer', 'meter_viewer'] }, 'body.roles'],
      [{ roles: ['meter_viewer', ''] }, 'body.roles.1'],
      [{ roles: 'meter_viewer' }, 'body.roles'],
      [{}, 'body.roles'],
      [{ roles: ['meter_viewer'], status: 'active' }, 'body.status'],
    ];
    for (const [body, field] of cases) {
      const response = await putRoles(harness.seed.adminKey, userId, body);
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('validation_failed');
      expect(response.body.error.details.map((detail: { field: string }) => detail.field)).toContain(field);
    }
    expect(await roleChangeEvents(userId)).toHaveLength(0);
  });

  test('unknown user is 404', async () => {
    expect((await putRoles(harness.seed.adminKey, randomUUID(), { roles: ['meter_viewer'] })).status).toBe(404);
    expect((await putRoles(harness.seed.adminKey, 'not-a-uuid', { roles: ['meter_viewer'] })).status).toBe(404);
  });

  test('user administrator and administrator role', async () => {
    const manager = await harness.addMember(uniqueEmail('manager'), ['user_administrator']);
    const plain = await harness.addMember(uniqueEmail('plain'), ['customer_viewer']);
    const administrator = await harness.addMember(uniqueEmail('admin2'), ['administrator']);

    const grant = await putRoles(manager.key, plain.userId, { roles: ['administrator'] });
    expect(grant.status).toBe(403);
    expect(grant.body.error.code).toBe('forbidden');

    const remove = await putRoles(manager.key, administrator.userId, { roles: ['customer_viewer'] });
    expect(remove.status).toBe(403);

    const other = await putRoles(manager.key, plain.userId, { roles: ['customer_contributor', 'user_administrator'] });
    expect(other.status).toBe(200);
    expect(other.body.roles).toEqual(['customer_contributor', 'user_administrator']);
    expect(await activeAdministrators(harness.seed.sandboxId)).toHaveLength(2);

    const viewer = await harness.addMember(uniqueEmail('viewer'), ['customer_viewer']);
    expect((await putRoles(viewer.key, plain.userId, { roles: ['meter_viewer'] })).status).toBe(403);
  });

  test('last administrator keeps role', async () => {
    const environment = await freshEnvironment();
    const only = await harness.addMember(uniqueEmail('only'), ['administrator'], environment.id);

    const response = await putRoles(only.key, only.userId, { roles: ['user_administrator'] }, environment.name);
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('last_administrator');
    expect(await activeAdministrators(environment.id)).toEqual([only.userId]);

    // Adding roles next to administrator is fine.
    const kept = await putRoles(only.key, only.userId, { roles: ['administrator', 'meter_viewer'] }, environment.name);
    expect(kept.status).toBe(200);
  });

  test('revoked member is 409', async () => {
    const { userId } = await harness.addMember(uniqueEmail('revoked'), ['customer_viewer']);
    await harness.db('memberships').where({ user_id: userId, environment_id: harness.seed.sandboxId }).update({ status: 'revoked' });
    const response = await putRoles(harness.seed.adminKey, userId, { roles: ['meter_viewer'] });
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('member_status_conflict');
  });
});

describe('OpenAPI paths', () => {
  test('member-change paths build', () => {
    const document = createDocument({
      openapi: '3.1.0',
      info: { title: 'member changes', version: '1' },
      components: { securitySchemes: { ...memberChangeSecuritySchemes } },
      paths: memberChangePaths,
    });
    const base = '/v1/accounts/{accountId}/environments/{environment}/users/{userId}';
    expect(Object.keys(document.paths ?? {}).sort()).toEqual(
      [`${base}/deactivate`, `${base}/deactivation-preview`, `${base}/reactivate`, `${base}/roles`, '/v1/operator/users/deactivate'].sort(),
    );
    expect(Object.keys(document.components?.schemas ?? {})).toEqual(
      expect.arrayContaining(['RoleChangeRequest', 'DeactivationPreview', 'DeactivatedMember', 'OperatorDeactivationReport']),
    );
  });
});

describe('last administrator under concurrency', () => {
  test('concurrent demotions leave one', async () => {
    for (let round = 0; round < 3; round += 1) {
      const environment = await freshEnvironment();
      const a = await harness.addMember(uniqueEmail('a'), ['administrator'], environment.id);
      const b = await harness.addMember(uniqueEmail('b'), ['administrator'], environment.id);

      const [demoteA, demoteB] = await Promise.all([
        putRoles(b.key, a.userId, { roles: ['user_administrator'] }, environment.name),
        putRoles(a.key, b.userId, { roles: ['user_administrator'] }, environment.name),
      ]);
      const statuses = [demoteA.status, demoteB.status].sort();
      expect(statuses[0]).toBe(200);
      // The loser either passed the API's checks and met the lock (409), or arrived after the winner's
      // commit and no longer was an administrator (403).
      expect([403, 409]).toContain(statuses[1]);
      expect(await activeAdministrators(environment.id)).toHaveLength(1);
    }
  });

  test('concurrent activities leave one', async () => {
    for (let round = 0; round < 3; round += 1) {
      const environment = await freshEnvironment();
      const a = await harness.addMember(uniqueEmail('a'), ['administrator'], environment.id);
      const b = await harness.addMember(uniqueEmail('b'), ['administrator'], environment.id);
      const change = (target: string, actor: string) =>
        activityEnvironment().run(activities.changeMemberRoles, {
          accountId: harness.seed.accountId,
          environmentId: environment.id,
          userId: target,
          roles: ['meter_viewer'],
          actor: { type: 'user' as const, userId: actor },
        });

      // Both pass every check before either commits, so only the environment lock keeps one administrator.
      const results = await Promise.allSettled([change(a.userId, b.userId), change(b.userId, a.userId)]);
      const fulfilled = results.filter((result) => result.status === 'fulfilled');
      const rejected = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
      expect(fulfilled).toHaveLength(1);
      expect(rejected).toHaveLength(1);
      expect(rejected[0]!.reason).toMatchObject({ type: 'LastAdministrator', nonRetryable: true });
      expect(await activeAdministrators(environment.id)).toHaveLength(1);
    }
  });

  test('changeMemberRoles twice changes once', async () => {
    const email = uniqueEmail('twice');
    const { userId } = await harness.addMember(email, ['customer_viewer']);
    const execution = { workflowId: `role-change-test-${randomUUID()}`, runId: randomUUID() };
    const input = {
      accountId: harness.seed.accountId,
      environmentId: harness.seed.sandboxId,
      userId,
      roles: ['meter_viewer'],
      actor: { type: 'user' as const, userId: harness.seed.adminUserId },
    };

    const first = (await activityEnvironment(execution).run(activities.changeMemberRoles, input)) as RoleChangeResult;
    const second = await activityEnvironment(execution).run(activities.changeMemberRoles, input);
    expect(first).toMatchObject({ changed: true, before: ['customer_viewer'], after: ['meter_viewer'] });
    expect(second).toEqual(first);
    expect(await roleChangeEvents(userId)).toHaveLength(1);

    const notice = { step: 'notice', notice: { kind: 'roles_changed' as const, membershipId: first.membershipId, before: first.before, after: first.after, actor: input.actor } };
    expect(await activityEnvironment(execution).run(activities.sendMemberNotice, notice)).toEqual({ status: 'sent' });
    expect(await activityEnvironment(execution).run(activities.sendMemberNotice, notice)).toEqual({ status: 'already_sent' });
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
  });
});

(process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record role-change histories', () => {

  const save = (name: string, workflowId: string) => recordHistory(harness.temporal, harness.config.temporal.address, name, workflowId);

  test('record changed roles', async () => {
    const { userId } = await harness.addMember(uniqueEmail('history'), ['customer_viewer']);
    await putRoles(harness.seed.adminKey, userId, { roles: ['meter_viewer'] }).expect(200);
    const [event] = await roleChangeEvents(userId);
    await save('role-change-changed', event.workflow_id);
  });

  test('record rejected role change', async () => {
    const environment = await freshEnvironment();
    const only = await harness.addMember(uniqueEmail('history-only'), ['administrator'], environment.id);
    await putRoles(only.key, only.userId, { roles: ['meter_viewer'] }, environment.name).expect(409);
    let workflowId: string | undefined;
    for await (const workflow of harness.temporal.workflow.list({ query: `WorkflowType = 'roleChangeWorkflow'` })) {
      if (workflow.workflowId.includes(only.userId)) {
        workflowId = workflow.workflowId;
      }
    }
    await save('role-change-rejected', workflowId!);
  });
});
