
import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { WithStartWorkflowOperation, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { pino } from 'pino';

import { createBulkActivities } from '../activities/bulk.js';

import { invitationWorkflowId } from '../api/invitation-workflows.js';
import { invitationGroupWorkflowId } from '../api/routes/bulk.js';
import { createSession } from '../api/sessions.js';
import { createAccount, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { createEmailSender } from '../lib/email/index.js';
import { deriveKey } from '../lib/secrets.js';
import { invitationGroupRecordedUpdate, invitationGroupWorkflow, type InvitationGroupState } from '../workflows/bulk.js';
import { tokenIn, type ReceivedMail } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { recordHistory } from './support/histories.js';

let harness: Harness;
let idKey: Buffer;
/** A session of a person who is an administrator in both environments. */
let adminSession: string;
/** An API key of an administrator of production; the seed's key is for sandbox. */
let productionAdminKey: string;

beforeAll(async () => {
  harness = await startHarness({ env: { INVITE_RESEND_COOLDOWN: '1s' } });
  idKey = deriveKey(harness.config.appSecret, 'workflow-id');
  adminSession = await sessionFor({ sandbox: ['administrator'], production: ['administrator'] });
  productionAdminKey = (await harness.addMember(uniqueEmail('prod-admin'), ['administrator'], harness.seed.productionId)).key;
});

afterAll(async () => {
  await harness?.close();
});

function environmentId(environment: string): string {
  return environment === 'sandbox' ? harness.seed.sandboxId : harness.seed.productionId;
}

/** Makes a person an active member with the given roles per environment and returns a session token. */
async function sessionFor(rolesByEnvironment: Record<string, string[]>): Promise<string> {
  const email = uniqueEmail('caller');
  let userId = '';
  for (const [environment, roles] of Object.entries(rolesByEnvironment)) {
    ({ userId } = await harness.addMember(email, roles, environmentId(environment)));
  }
  const session = await createSession(harness.db, harness.config, userId, { ip: undefined, userAgent: undefined });
  return session.token;
}

function groupInvite(credential: string | undefined, body: unknown) {
  const request = harness.api.post(`/v1/accounts/${harness.seed.accountId}/users`);
  return credential === undefined ? request.send(body as object) : request.set('Authorization', `Bearer ${credential}`).send(body as object);
}

function twoEnvironments(email: string) {
  return {
    email,
    environments: [
      { environment: 'sandbox', roles: ['customer_viewer'] },
      { environment: 'production', roles: ['invoice_viewer', 'customer_viewer'] },
    ],
  };
}

/** Starts the group workflow directly, past the API's up-front conflict check, and waits for its update. */
function startGroupDirectly(email: string): Promise<InvitationGroupState> {
  const body = twoEnvironments(email);
  const startWorkflowOperation = new WithStartWorkflowOperation(invitationGroupWorkflow, {
    workflowId: invitationGroupWorkflowId(idKey, harness.seed.accountId, email),
    taskQueue: harness.config.temporal.taskQueue,
    workflowIdConflictPolicy: 'FAIL',
    args: [
      {
        accountId: harness.seed.accountId,
        email,
        invitedByUserId: harness.seed.adminUserId,
        timing: harness.config.invitation,
        environments: body.environments.map((item) => ({
          ...item,
          environmentId: environmentId(item.environment),
          invitationWorkflowId: invitationWorkflowId(idKey, harness.seed.accountId, item.environment, email),
        })),
      },
    ],
  });
  return harness.temporal.workflow.executeUpdateWithStart(invitationGroupRecordedUpdate, { startWorkflowOperation });
}

/** Returns the accept links of an email, in the order it lists them. */
function linksIn(mail: ReceivedMail): string[] {
  const text = mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
  return [...text.matchAll(/https?:\/\/\S+\/invitations\/accept\?token=[A-Za-z0-9_%-]+/g)].map((match) => match[0]);
}

function tokenOf(link: string): string {
  return decodeURIComponent(new URL(link).searchParams.get('token')!);
}

async function membershipStatus(email: string, environment: string): Promise<string | undefined> {
  const row = await harness.db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .where({ 'users.email_normalized': email, 'memberships.environment_id': environmentId(environment) })
    .first('memberships.status');
  return row?.status;
}

async function invitationsOf(email: string) {
  return harness.db('invitations')
    .join('environments', 'environments.id', 'invitations.environment_id')
    .where({ email_normalized: email })
    .orderBy('invitations.created_at')
    .select('invitations.id', 'invitations.status', 'invitations.workflow_id', 'environments.name as environment');
}

async function groupExists(email: string): Promise<boolean> {
  try {
    await harness.temporal.workflow.getHandle(invitationGroupWorkflowId(idKey, harness.seed.accountId, email)).describe();
    return true;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) {
      return false;
    }
    throw error;
  }
}

/** Waits a moment longer than the email pipeline needs, so that a second email would have arrived. */
async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1_000));
}

describe('invitation to several environments', () => {
  test('one email, two working links', async () => {
    const email = uniqueEmail('group');
    const response = await groupInvite(adminSession, twoEnvironments(email));

    expect(response.status).toBe(202);
    expect(response.body.workflowId).toBe(invitationGroupWorkflowId(idKey, harness.seed.accountId, email));
    expect(response.body.email).toBe(email);
    expect(response.body.environments.map((item: { environment: string }) => item.environment)).toEqual(['sandbox', 'production']);
    for (const { environment, member } of response.body.environments) {
      expect(member.status).toBe('invited');
      expect(member.id).toBe(response.body.userId);
      expect(member.invitation.status).toBe('pending');
      // The same workflow id as a single invite, so the per-environment routes find it.
      expect(member.invitation.workflowId).toBe(invitationWorkflowId(idKey, harness.seed.accountId, environment, email));
    }
    expect(response.body.environments[1].member.roles).toEqual(['customer_viewer', 'invoice_viewer']);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length >= 1);
    const group = harness.temporal.workflow.getHandle(response.body.workflowId);
    const outcome: InvitationGroupState = await group.result();
    expect(outcome.phase).toBe('emailed');
    await settle();

    const mails = harness.sendgrid.deliveredTo(email);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.body.categories).toEqual(['invitation-group']);
    expect(mails[0]!.body.subject).toContain('sandbox, production');
    const links = linksIn(mails[0]!);
    expect(links).toHaveLength(2);
    expect(new Set(links).size).toBe(2);

    const invitations = await invitationsOf(email);
    expect(invitations.map((invitation) => invitation.environment).sort()).toEqual(['production', 'sandbox']);
    expect(new Set(invitations.map((invitation) => invitation.workflow_id)).size).toBe(2);
    const emailRows = await harness.db('invitation_emails').whereIn('invitation_id', invitations.map((invitation) => invitation.id)).select('step', 'status');
    expect(emailRows).toEqual([
      { step: 'initial', status: 'sent' },
      { step: 'initial', status: 'sent' },
    ]);

    const sandboxAccept = await harness.api.post('/v1/invitations/accept').send({ token: tokenOf(links[0]!), password: 'a password for both' });
    expect(sandboxAccept.status).toBe(200);
    expect(sandboxAccept.body.environment).toBe('sandbox');
    expect(await membershipStatus(email, 'sandbox')).toBe('active');
    expect(await membershipStatus(email, 'production')).toBe('invited');

    // The person has a password now, so the second link is accepted without one.
    const productionAccept = await harness.api.post('/v1/invitations/accept').send({ token: tokenOf(links[1]!) });
    expect(productionAccept.status).toBe(200);
    expect(productionAccept.body.environment).toBe('production');
    expect(await membershipStatus(email, 'production')).toBe('active');

    for (const { member } of response.body.environments) {
      const result = await harness.temporal.workflow.getHandle(member.invitation.workflowId).result();
      expect(result.outcome).toBe('accepted');
    }
    const audit = await harness.db('audit_events').where({ workflow_id: response.body.workflowId }).pluck('action');
    expect(audit).toEqual(['invitation_group.emailed']);
  });

  test('resend and revoke per environment', async () => {
    const email = uniqueEmail('per-env');
    const response = await groupInvite(adminSession, twoEnvironments(email));
    expect(response.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const [sandboxLink] = linksIn(harness.sendgrid.deliveredTo(email)[0]!);
    const [sandbox, production] = response.body.environments;

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const resent = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${sandbox.member.id}/invitation/resend`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(resent.status).toBe(200);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    expect(harness.sendgrid.deliveredTo(email)[1]!.body.categories).toEqual(['invitation-resend']);
    const replaced = await harness.api.post('/v1/invitations/accept').send({ token: tokenOf(sandboxLink!), password: 'the old link is dead' });
    expect(replaced.status).toBe(410);

    const revoked = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/production/users/${production.member.id}/invitation/revoke`)
      .set('Authorization', `Bearer ${productionAdminKey}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    expect(await membershipStatus(email, 'production')).toBe('revoked');
    expect(await membershipStatus(email, 'sandbox')).toBe('invited');
  });

  test('conflict leaves nothing written', async () => {
    const member = uniqueEmail('member');
    await harness.addMember(member, ['customer_viewer'], harness.seed.productionId);
    const invited = uniqueEmail('invited');
    const single = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email: invited, roles: ['customer_viewer'] });
    expect(single.status).toBe(202);

    const cases = [
      { email: member, code: 'already_member', environment: 'production', before: [] as string[] },
      { email: invited, code: 'invitation_pending', environment: 'sandbox', before: ['sandbox'] },
    ];
    for (const item of cases) {
      const response = await groupInvite(adminSession, twoEnvironments(item.email));

      expect(response.status).toBe(409);
      expect(response.body.error.code).toBe(item.code);
      expect(response.body.error.details).toEqual([expect.objectContaining({ environment: item.environment, code: item.code })]);
      expect((await invitationsOf(item.email)).map((invitation) => invitation.environment)).toEqual(item.before);
      expect(await groupExists(item.email)).toBe(false);
    }
    expect(await membershipStatus(member, 'sandbox')).toBeUndefined();
    expect(await membershipStatus(invited, 'production')).toBeUndefined();
    await settle();
    expect(harness.sendgrid.deliveredTo(member)).toHaveLength(0);
    expect(harness.sendgrid.deliveredTo(invited)).toHaveLength(1);
  });

  test('race conflict revokes recorded invitations', async () => {
    // Straight to the workflow, past the API's up-front check, as when a conflicting invitation lands
    // between the check and the start.
    const member = uniqueEmail('race-member');
    await harness.addMember(member, ['customer_viewer'], harness.seed.productionId);
    const invited = uniqueEmail('race-invited');
    await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/production/users`)
      .set('Authorization', `Bearer ${productionAdminKey}`)
      .send({ email: invited, roles: ['customer_viewer'] })
      .expect(202);

    for (const [email, type] of [
      [member, 'AlreadyMember'],
      [invited, 'InvitationPending'],
    ] as const) {
      const groupId = invitationGroupWorkflowId(idKey, harness.seed.accountId, email);
      const failure = await startGroupDirectly(email).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((failure as WorkflowUpdateFailedError).cause).toMatchObject({ type, details: [{ environment: 'production' }] });

      const result: InvitationGroupState = await harness.temporal.workflow.getHandle(groupId).result();
      expect(result.phase).toBe('rejected');
      const sandbox = (await invitationsOf(email)).filter((invitation) => invitation.environment === 'sandbox');
      expect(sandbox).toHaveLength(1);
      expect(sandbox[0]!.status).toBe('revoked');
      expect(await membershipStatus(email, 'sandbox')).toBe('revoked');
      const child = await harness.temporal.workflow.getHandle(sandbox[0]!.workflow_id).result();
      expect(child.outcome).toBe('revoked');
      const revokedEvent = await harness.db('audit_events').where({ action: 'invitation.revoked', workflow_id: groupId }).first('details');
      expect(revokedEvent.details).toMatchObject({ invitationId: sandbox[0]!.id, reason: 'invitation_group_rejected' });
    }
    await settle();
    expect(harness.sendgrid.deliveredTo(member)).toHaveLength(0);
    // Only the email of the earlier single invitation.
    expect(harness.sendgrid.deliveredTo(invited)).toHaveLength(1);
  });

  test('authorization and bad input', async () => {
    const userAdministratorSession = await sessionFor({ sandbox: ['user_administrator'], production: ['user_administrator'] });
    const sandboxOnlySession = await sessionFor({ sandbox: ['administrator'] });
    const viewerInProductionSession = await sessionFor({ sandbox: ['user_administrator'], production: ['customer_viewer'] });
    const otherAccount = uniqueId('other');
    await createAccount(harness.db, { id: otherAccount, name: 'Another account', environments: ['sandbox'] });
    const outsider = await ensureActiveMember(harness.db, {
      accountId: otherAccount,
      environmentId: (await findEnvironment(harness.db, otherAccount, 'sandbox'))!.id,
      email: uniqueEmail('outsider'),
      roles: ['administrator'],
    });
    const outsiderSession = (await createSession(harness.db, harness.config, outsider.userId, { ip: undefined, userAgent: undefined })).token;

    const cases = [
      { name: 'no credential', credential: undefined, body: twoEnvironments(uniqueEmail('t')), status: 401, code: 'unauthorized' },
      { name: 'API key, two environments', credential: harness.seed.adminKey, body: twoEnvironments(uniqueEmail('t')), status: 403, code: 'forbidden' },
      {
        name: 'API key of another environment',
        credential: harness.seed.adminKey,
        body: { email: uniqueEmail('t'), environments: [{ environment: 'production', roles: ['customer_viewer'] }] },
        status: 403,
        code: 'forbidden',
      },
      { name: 'no access to the account', credential: outsiderSession, body: twoEnvironments(uniqueEmail('t')), status: 403, code: 'forbidden' },
      { name: 'not a member of one environment', credential: sandboxOnlySession, body: twoEnvironments(uniqueEmail('t')), status: 403, code: 'forbidden' },
      { name: 'no manager role in one environment', credential: viewerInProductionSession, body: twoEnvironments(uniqueEmail('t')), status: 403, code: 'forbidden' },
      {
        name: 'user administrator grants administrator',
        credential: userAdministratorSession,
        body: {
          email: uniqueEmail('t'),
          environments: [
            { environment: 'sandbox', roles: ['customer_viewer'] },
            { environment: 'production', roles: ['administrator'] },
          ],
        },
        status: 403,
        code: 'forbidden',
      },
      {
        name: 'unknown environment',
        credential: adminSession,
        body: {
          email: uniqueEmail('t'),
          environments: [
            { environment: 'sandbox', roles: ['customer_viewer'] },
            { environment: 'staging', roles: ['customer_viewer'] },
          ],
        },
        status: 400,
        code: 'validation_failed',
        field: 'body.environments.1.environment',
      },
      {
        name: 'repeated environment',
        credential: adminSession,
        body: {
          email: uniqueEmail('t'),
          environments: [
            { environment: 'sandbox', roles: ['customer_viewer'] },
            { environment: 'sandbox', roles: ['invoice_viewer'] },
          ],
        },
        status: 400,
        code: 'validation_failed',
        field: 'body.environments.1.environment',
      },
      {
        name: 'unknown role',
        credential: adminSession,
        body: { email: uniqueEmail('t'), environments: [{ environment: 'production', roles: ['customer_viewer', 'wizard'] }] },
        status: 400,
        code: 'validation_failed',
        field: 'body.environments.0.roles.1',
      },
      { name: 'no environments', credential: adminSession, body: { email: uniqueEmail('t'), environments: [] }, status: 400, code: 'validation_failed', field: 'body.environments' },
      { name: 'invalid email', credential: adminSession, body: twoEnvironments('not an address'), status: 400, code: 'validation_failed', field: 'body.email' },
    ];

    for (const item of cases) {
      const response = await groupInvite(item.credential, item.body);
      expect({ name: item.name, status: response.status, code: response.body.error?.code }).toEqual({ name: item.name, status: item.status, code: item.code });
      if (item.field) {
        expect({ name: item.name, fields: response.body.error.details.map((detail: { field: string }) => detail.field) }).toEqual({
          name: item.name,
          fields: [item.field],
        });
      }
      const email = (item.body as { email: string }).email;
      expect({ name: item.name, invitations: await invitationsOf(email.toLowerCase()) }).toEqual({ name: item.name, invitations: [] });
    }

    // A user administrator may invite to both with other roles, and an API key to its own environment alone.
    const allowed = await groupInvite(userAdministratorSession, twoEnvironments(uniqueEmail('allowed')));
    expect(allowed.status).toBe(202);
    const byKey = await groupInvite(harness.seed.adminKey, { email: uniqueEmail('by-key'), environments: [{ environment: 'sandbox', roles: ['customer_viewer'] }] });
    expect(byKey.status).toBe(202);
    expect(byKey.body.environments).toHaveLength(1);
  });

  test('idempotency key replays the response', async () => {
    const email = uniqueEmail('replay');
    const first = await groupInvite(adminSession, twoEnvironments(email)).set('Idempotency-Key', `group-${email}`);
    const second = await groupInvite(adminSession, twoEnvironments(email)).set('Idempotency-Key', `group-${email}`);

    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body).toEqual(first.body);
    expect(await invitationsOf(email)).toHaveLength(2);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    await settle();
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
  });
});

describe('group email activity', () => {
  test('twice mails once, with current links', async () => {
    const activities = createBulkActivities({
      config: harness.config,
      db: harness.db,
      email: createEmailSender(harness.config, pino({ level: 'silent' })),
      tokenKey: deriveKey(harness.config.appSecret, 'invitation-token'),
      temporal: harness.temporal,
    });
    const email = uniqueEmail('mail-twice');
    const response = await groupInvite(adminSession, twoEnvironments(email));
    expect(response.status).toBe(202);
    const group = harness.temporal.workflow.getHandle(response.body.workflowId);
    await group.result();
    const invitationIds: string[] = response.body.environments.map((item: { member: { invitation: { id: string } } }) => item.member.invitation.id);
    const [firstSandbox, firstProduction] = linksIn(harness.sendgrid.deliveredTo(email)[0]!);

    // The same run again, as after a lost completion: nothing more goes out.
    const sameRun = new MockActivityEnvironment(
      { workflowExecution: { workflowId: group.workflowId, runId: (await group.describe()).runId } },
      { logger: new DefaultLogger('WARN') },
    );
    expect(await sameRun.run(activities.sendInvitationGroupEmail, { invitationIds })).toEqual({ sent: true });
    await settle();
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);

    // After a resend in sandbox, a new email carries the resent link there and the first link elsewhere.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${response.body.userId}/invitation/resend`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .expect(200);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2);
    const resentToken = tokenIn(harness.sendgrid.deliveredTo(email)[1]!);

    const otherRun = new MockActivityEnvironment({ workflowExecution: { workflowId: group.workflowId, runId: randomUUID() } }, { logger: new DefaultLogger('WARN') });
    expect(await otherRun.run(activities.sendInvitationGroupEmail, { invitationIds })).toEqual({ sent: true });
    expect(await otherRun.run(activities.sendInvitationGroupEmail, { invitationIds })).toEqual({ sent: true });
    await settle();
    const mails = harness.sendgrid.deliveredTo(email);
    expect(mails).toHaveLength(3);
    const [sandboxLink, productionLink] = linksIn(mails[2]!);
    expect(tokenOf(sandboxLink!)).toBe(resentToken);
    expect(tokenOf(sandboxLink!)).not.toBe(tokenOf(firstSandbox!));
    expect(productionLink).toBe(firstProduction);
  });
});

(process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record histories', () => {

  const save = (name: string, workflowId: string) => recordHistory(harness.temporal, harness.config.temporal.address, name, workflowId);

  test('record group and deferred invitation', async () => {
    const email = uniqueEmail('recorded-group');
    const response = await groupInvite(adminSession, twoEnvironments(email));
    expect(response.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    await save('invitation-group-emailed', response.body.workflowId);

    const [sandboxLink] = linksIn(harness.sendgrid.deliveredTo(email)[0]!);
    await harness.api.post('/v1/invitations/accept').send({ token: tokenOf(sandboxLink!), password: 'recorded history password' }).expect(200);
    await save('invitation-deferred-accepted', response.body.environments[0].member.invitation.workflowId);
  });

  test('record rejected group', async () => {
    const email = uniqueEmail('recorded-rejected');
    await harness.addMember(email, ['customer_viewer'], harness.seed.productionId);
    await expect(startGroupDirectly(email)).rejects.toThrow(WorkflowUpdateFailedError);
    const groupId = invitationGroupWorkflowId(idKey, harness.seed.accountId, email);
    await save('invitation-group-rejected', groupId);
  });
});
