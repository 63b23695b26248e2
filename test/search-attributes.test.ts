import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Connection, type WorkflowExecutionInfo } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';

import { registerSearchAttributes } from '../scripts/search-attributes.js';
import { invitationStateQuery } from '../workflows/invitation.js';
import { memberStatusAttribute, searchAttributeFlags } from '../workflows/search-attributes.js';
import { tokenIn } from './support/fake-sendgrid.js';
import { SEARCH_ATTRIBUTE_FLAGS } from './support/global-setup.js';
import { startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { startRejectedInvitation } from './support/rejected-invitation.js';

/** What operators see of lifecycle workflows in the Temporal Web UI: search attributes, summaries, queries. */

const VISIBILITY_WAIT_MS = 15_000;

let harness: Harness;
let showingHarness: Harness | undefined;

beforeAll(async () => {
  harness = await startHarness();
});

afterAll(async () => {
  await showingHarness?.close();
  await harness?.close();
});

/** Lists workflows until the visibility store returns at least `count`, because it updates asynchronously. */
async function listUntil(query: string, count: number): Promise<WorkflowExecutionInfo[]> {
  const deadline = Date.now() + VISIBILITY_WAIT_MS;
  let found: WorkflowExecutionInfo[] = [];
  while (Date.now() < deadline) {
    found = [];
    for await (const workflow of harness.temporal.workflow.list({ query })) {
      found.push(workflow);
    }
    if (found.length >= count) {
      return found;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return found;
}

async function memberStatusOf(workflowId: string): Promise<string | undefined> {
  const description = await harness.temporal.workflow.getHandle(workflowId).describe();
  return description.typedSearchAttributes.get(memberStatusAttribute);
}

async function invite(target: Harness, email: string, roles: string[]) {
  const response = await target.api
    .post(`/v1/accounts/${target.seed.accountId}/environments/sandbox/users`)
    .set('Authorization', `Bearer ${target.seed.adminKey}`)
    .send({ email, roles });
  expect(response.status).toBe(202);
  return response.body.invitation.workflowId as string;
}

describe('search attributes', () => {
  test('test server flags match the code', () => {
    expect(SEARCH_ATTRIBUTE_FLAGS).toEqual(searchAttributeFlags());
  });

  test('pending invitations found by account', async () => {
    const first = await invite(harness, uniqueEmail('pending'), ['customer_viewer']);
    const second = await invite(harness, uniqueEmail('pending'), ['user_administrator']);

    const query = `LifecycleAccountId = "${harness.seed.accountId}" AND LifecycleKind = "invitation" AND ExecutionStatus = "Running"`;
    const found = await listUntil(query, 2);
    expect(found.map((workflow) => workflow.workflowId).sort()).toEqual([first, second].sort());
    for (const workflow of found) {
      expect(workflow.typedSearchAttributes.get(memberStatusAttribute)).toBe('invited');
    }
  });

  test('status follows acceptance', async () => {
    const email = uniqueEmail('accepting');
    const workflowId = await invite(harness, email, ['customer_viewer']);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);

    const accepted = await harness.api
      .post('/v1/invitations/accept')
      .send({ token: tokenIn(harness.sendgrid.deliveredTo(email)[0]!), password: 'a long enough password' });
    expect(accepted.status).toBe(200);
    await harness.temporal.workflow.getHandle(workflowId).result();

    expect(await memberStatusOf(workflowId)).toBe('active');
    const query = `LifecycleAccountId = "${harness.seed.accountId}" AND LifecycleMemberStatus = "active"`;
    const found = await listUntil(query, 1);
    expect(found.map((workflow) => workflow.workflowId)).toContain(workflowId);
  });

  test('status follows revocation', async () => {
    const email = uniqueEmail('revoked');
    const workflowId = await invite(harness, email, ['customer_viewer']);
    const userId = (await harness.db('users').where({ email }).first('id')).id as string;

    const revoked = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${userId}/invitation/revoke`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(revoked.status).toBe(200);
    await harness.temporal.workflow.getHandle(workflowId).result();

    expect(await memberStatusOf(workflowId)).toBe('revoked');
  });

  test('rejection shows member status', async () => {
    const workflowId = await startRejectedInvitation(harness, 'already-active');
    expect(await memberStatusOf(workflowId)).toBe('active');
  });

  test('deactivation is found by kind', async () => {
    const member = await harness.addMember(uniqueEmail('leaving'), ['customer_viewer']);
    const deactivated = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${member.userId}/deactivate`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(deactivated.status).toBe(200);

    const query = `LifecycleAccountId = "${harness.seed.accountId}" AND LifecycleKind = "deactivation" AND LifecycleEnvironment = "sandbox"`;
    const found = await listUntil(query, 1);
    expect(found).toHaveLength(1);
    await harness.temporal.workflow.getHandle(found[0]!.workflowId).result();
    expect(await memberStatusOf(found[0]!.workflowId)).toBe('deactivated');
  });
});

describe('workflow summaries', () => {
  test('email masked by default', async () => {
    const email = uniqueEmail('masked');
    const workflowId = await invite(harness, email, ['user_administrator']);

    const description = await harness.temporal.workflow.getHandle(workflowId).describe();
    const summary = await description.staticSummary();
    expect(summary).toBe(`Invitation of ${email[0]}***@example.com to ${harness.seed.accountId}/sandbox as user_administrator`);
    expect(summary).not.toContain(email);
  });

  test('email shown when configured', async () => {
    showingHarness = await startHarness({ env: { TEMPORAL_VISIBILITY_SHOW_EMAILS: 'true' } });
    const email = uniqueEmail('shown');
    const workflowId = await invite(showingHarness, email, ['customer_viewer']);

    const description = await showingHarness.temporal.workflow.getHandle(workflowId).describe();
    expect(await description.staticSummary()).toBe(`Invitation of ${email} to ${showingHarness.seed.accountId}/sandbox as customer_viewer`);
  });

  test('state readable by query', async () => {
    const workflowId = await invite(harness, uniqueEmail('queried'), ['customer_viewer']);

    const state = await harness.temporal.workflow.getHandle(workflowId).query(invitationStateQuery);
    expect(state.phase).toBe('pending');
    expect(state.invitationId).toEqual(expect.any(String));
  });
});

describe('register-search-attributes', () => {
  test('adds only the missing ones', async () => {
    const connection = await Connection.connect({ address: harness.config.temporal.address });
    try {
      const namespace = uniqueId('ns');
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      });

      const added = await registerSearchAttributes(connection, namespace);
      expect(added.sort()).toEqual(['LifecycleAccountId', 'LifecycleEnvironment', 'LifecycleKind', 'LifecycleMemberStatus']);
      const again = await registerSearchAttributes(connection, namespace);
      expect(again).toEqual([]);
    } finally {
      await connection.close();
    }
  });
});
