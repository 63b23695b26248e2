import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { pino } from 'pino';

import { createBulkActivities, type BatchRowCheck } from '../activities/bulk.js';
import { invitationWorkflowId } from '../api/invitation-workflows.js';
import { createEmailSender } from '../lib/email/index.js';
import { deriveKey } from '../lib/secrets.js';
import { batchProgressQuery, batchWorkflowId } from '../workflows/bulk.js';
import { invitationWorkflow } from '../workflows/invitation.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { WorkerProcess } from './support/worker-process.js';

interface RowInput {
  email: string;
  roles: string[];
}

interface BatchRowView {
  row: number;
  email: string;
  roles: string[];
  status: string;
  reason: string | null;
  userId: string | null;
  invitationId: string | null;
}

function batchPath(harness: Harness, environment = 'sandbox'): string {
  return `/v1/accounts/${harness.seed.accountId}/environments/${environment}/users:batch`;
}

function submitJson(harness: Harness, rows: RowInput[], key = harness.seed.adminKey) {
  return harness.api.post(batchPath(harness)).set('Authorization', `Bearer ${key}`).send({ rows });
}

function submitCsv(harness: Harness, csv: string, key = harness.seed.adminKey) {
  return harness.api.post(batchPath(harness)).set('Authorization', `Bearer ${key}`).set('Content-Type', 'text/csv').send(csv);
}

function getBatch(harness: Harness, batchId: string, query = '', key = harness.seed.adminKey, environment = 'sandbox') {
  return harness.api
    .get(`/v1/accounts/${harness.seed.accountId}/environments/${environment}/batches/${batchId}${query}`)
    .set('Authorization', `Bearer ${key}`);
}

/** Polls the batch until its workflow has completed it, and returns it. */
async function completedBatch(harness: Harness, batchId: string, timeoutMs: number) {
  return eventually(
    async () => {
      const response = await getBatch(harness, batchId);
      expect(response.status).toBe(200);
      return response.body.status === 'completed' ? (response.body as { counts: Record<string, number>; rows: BatchRowView[] }) : undefined;
    },
    timeoutMs,
    `batch ${batchId} completed`,
  );
}

/** Shuffles with a fixed seed (a linear congruential generator), so rows of each kind spread through the batch. */
function shuffle<T>(items: T[]): T[] {
  const result = [...items];
  let seed = 42;
  for (let index = result.length - 1; index > 0; index -= 1) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    const other = seed % (index + 1);
    [result[index], result[other]] = [result[other]!, result[index]!];
  }
  return result;
}

async function countBatches(harness: Harness): Promise<number> {
  const [row] = await harness.db('batches').count({ count: '*' });
  return Number(row?.count);
}

async function invitationsOfBatch(harness: Harness, batchId: string) {
  return harness.db('invitations').where({ batch_id: batchId }).select('id', 'email_normalized', 'status', 'workflow_id');
}

describe('bulk onboarding', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({ env: { BATCH_CONCURRENCY: '20', INVITE_RESEND_COOLDOWN: '1s' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('500 mixed rows, right results', async () => {
    const members = await Promise.all(
      Array.from({ length: 10 }, async (_, index) => {
        const email = uniqueEmail(`member-${index}`);
        await harness.addMember(email, ['customer_viewer']);
        return email;
      }),
    );

    type Kind = 'good' | 'badEmail' | 'unknownRole' | 'member';
    const planned: (RowInput & { kind: Kind })[] = [
      ...Array.from({ length: 450 }, (_, index) => ({
        kind: 'good' as const,
        email: uniqueEmail(`good-${index}`),
        roles: index % 3 === 0 ? ['customer_viewer', 'invoice_contributor'] : ['subscription_viewer'],
      })),
      ...Array.from({ length: 20 }, (_, index) => ({
        kind: 'badEmail' as const,
        email: [`no-at-sign-${index}`, `two@@example.com`, `space in-${index}@example.com`, `trailing-${index}@`][index % 4]!,
        roles: ['customer_viewer'],
      })),
      ...Array.from({ length: 10 }, (_, index) => ({ kind: 'unknownRole' as const, email: uniqueEmail(`role-${index}`), roles: ['customer_viewer', `wizard_${index}`] })),
      ...members.map((email) => ({ kind: 'member' as const, email, roles: ['invoice_viewer'] })),
    ];
    const shuffled = shuffle(planned);
    // Ten later rows repeat good addresses, in another case: the first row with an address keeps it.
    const goodRows = shuffled.filter((row) => row.kind === 'good').slice(0, 10);
    const rows = [...shuffled, ...goodRows.map((row) => ({ kind: 'duplicate' as const, email: row.email.toUpperCase(), roles: ['customer_viewer'] }))];
    expect(rows).toHaveLength(500);

    const started = Date.now();
    const response = await submitJson(harness, rows.map(({ email, roles }) => ({ email, roles })));
    expect(response.status).toBe(202);
    expect(response.body).toEqual({
      batchId: expect.any(String),
      workflowId: batchWorkflowId(harness.seed.accountId, 'sandbox', response.body.batchId),
      status: 'running',
      counts: { total: 500, queued: 460, invalid: 40 },
    });
    expect(response.headers.location).toBe(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/batches/${response.body.batchId}`);

    const batch = await completedBatch(harness, response.body.batchId, 110_000);
    console.log(`500-row batch completed in ${Date.now() - started} ms`);
    expect(batch.counts).toEqual({ total: 500, queued: 0, invited: 450, already_member: 10, invalid: 40, failed: 0 });

    const firstRowByEmail = new Map(rows.map((row, index) => [row.email.toLowerCase(), index + 1] as const).reverse());
    batch.rows.forEach((result, index) => {
      const planned = rows[index]!;
      const expected: Record<typeof planned.kind, [string, RegExp | null]> = {
        good: ['invited', null],
        badEmail: ['invalid', /^email must be a valid email address$/],
        unknownRole: ['invalid', /^roles contains unknown role\(s\) "wizard_\d+"; see GET \/v1\/roles$/],
        member: ['already_member', /already an active member/],
        duplicate: ['invalid', new RegExp(`^email duplicates row ${firstRowByEmail.get(planned.email.toLowerCase())}$`)],
      };
      const [status, reason] = expected[planned.kind];
      expect({ row: result.row, status: result.status }).toEqual({ row: index + 1, status });
      if (reason) {
        expect(result.reason).toMatch(reason);
      } else {
        expect(result.reason).toBeNull();
        expect(result.invitationId).toEqual(expect.any(String));
        expect(result.userId).toEqual(expect.any(String));
      }
    });

    // Exactly one invitation per good row, each the row's own.
    const good = rows.filter((row) => row.kind === 'good');
    const invitations = await invitationsOfBatch(harness, response.body.batchId);
    expect(invitations).toHaveLength(450);
    expect(new Set(invitations.map((invitation) => invitation.email_normalized))).toEqual(new Set(good.map((row) => row.email.toLowerCase())));
    expect(new Set(invitations.map((invitation) => invitation.id))).toEqual(
      new Set(batch.rows.filter((row) => row.status === 'invited').map((row) => row.invitationId)),
    );

    // Exactly one email per good row and none for the others; the last ones may still be on their way.
    await harness.sendgrid.waitFor(() => good.every((row) => harness.sendgrid.deliveredTo(row.email).length >= 1), 60_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const mailsByAddress = new Map<string, number>();
    for (const mail of harness.sendgrid.delivered) {
      const to = mail.body.personalizations[0]!.to[0]!.email.toLowerCase();
      mailsByAddress.set(to, (mailsByAddress.get(to) ?? 0) + 1);
    }
    expect(good.filter((row) => mailsByAddress.get(row.email.toLowerCase()) !== 1)).toEqual([]);
    expect(rows.filter((row) => row.kind !== 'good' && row.kind !== 'duplicate' && mailsByAddress.has(row.email.toLowerCase()))).toEqual([]);

    const audit = await harness.db('audit_events').where({ workflow_id: response.body.workflowId }).orderBy('id').select('action', 'actor_user_id', 'details');
    expect(audit.map((event) => event.action)).toEqual(['batch.created', 'batch.completed']);
    expect(audit[0]!.actor_user_id).toBe(harness.seed.adminUserId);
    expect(audit[1]!.details.counts).toEqual(batch.counts);

    const handle = harness.temporal.workflow.getHandle(response.body.workflowId);
    expect(await handle.query(batchProgressQuery)).toEqual({ total: 500, done: 500 });
    console.log(`500-row batch workflow history: ${(await handle.describe()).historyLength} events`);

    const invalidOnly = await getBatch(harness, response.body.batchId, '?status=invalid');
    expect(invalidOnly.body.rows).toHaveLength(40);
  });

  test('1,000 JSON rows over 100 kB', async () => {
    // Long addresses push the body past the 100 kB limit of other routes; unknown roles keep it fast.
    const rows = Array.from({ length: 1_000 }, (_, index) => ({
      email: `${'long-local-part-'.repeat(6)}${index}@example.com`,
      roles: ['no_such_role'],
    }));
    expect(JSON.stringify({ rows }).length).toBeGreaterThan(100 * 1024);

    const response = await submitJson(harness, rows);
    expect(response.status).toBe(202);
    expect(response.body.counts).toMatchObject({ total: 1_000, invalid: 1_000 });
    const batch = await completedBatch(harness, response.body.batchId, 60_000);
    expect(batch.counts.invalid).toBe(1_000);
  });

  test('CSV batch with quotes', async () => {
    const ada = uniqueEmail('ada');
    const grace = uniqueEmail('grace');
    const csv = [
      '\uFEFFEmail,Roles',
      `${ada},customer_viewer;invoice_contributor`,
      `"${grace}", "subscription_viewer; meter_viewer"`,
      'not-an-address,customer_viewer',
      `${uniqueEmail('no-roles')},`,
      `${uniqueEmail('one-field')}`,
      `${uniqueEmail('empty-role')},customer_viewer;;invoice_viewer`,
      `${uniqueEmail('twice')},customer_viewer;customer_viewer`,
      '',
    ].join('\r\n');

    const response = await submitCsv(harness, csv);
    expect(response.status).toBe(202);
    expect(response.body.counts).toEqual({ total: 7, queued: 2, invalid: 5 });

    const batch = await completedBatch(harness, response.body.batchId, 30_000);
    expect(batch.rows.map((row) => [row.row, row.status, row.reason])).toEqual([
      [1, 'invited', null],
      [2, 'invited', null],
      [3, 'invalid', 'email must be a valid email address'],
      [4, 'invalid', 'roles must contain at least one role'],
      [5, 'invalid', 'row must have 2 fields (email,roles), not 1; roles must contain at least one role'],
      [6, 'invalid', 'roles must not contain empty role names'],
      [7, 'invalid', 'roles must not contain the same role twice: "customer_viewer"'],
    ]);
    expect(batch.rows[0]!.roles).toEqual(['customer_viewer', 'invoice_contributor']);
    expect(batch.rows[1]!.roles).toEqual(['subscription_viewer', 'meter_viewer']);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(ada).length === 1 && harness.sendgrid.deliveredTo(grace).length === 1);
    const member = await harness.api
      .get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${batch.rows[1]!.userId}`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(member.body.status).toBe('invited');
    expect(member.body.roles).toEqual(['meter_viewer', 'subscription_viewer']);
  });

  test('same Idempotency-Key runs once', async () => {
    const rows = Array.from({ length: 5 }, (_, index) => ({ email: uniqueEmail(`once-${index}`), roles: ['customer_viewer'] }));
    const key = `batch-${rows[0]!.email}`;
    const before = await countBatches(harness);

    const first = await submitJson(harness, rows).set('Idempotency-Key', key);
    const second = await submitJson(harness, rows).set('Idempotency-Key', key);
    const otherBody = await submitJson(harness, rows.slice(1)).set('Idempotency-Key', key);

    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body).toEqual(first.body);
    expect(second.headers.location).toBe(first.headers.location);
    expect(otherBody.status).toBe(422);
    const after = await countBatches(harness);
    expect(after - before).toBe(1);

    await completedBatch(harness, first.body.batchId, 30_000);
    expect(await invitationsOfBatch(harness, first.body.batchId)).toHaveLength(5);
    await harness.sendgrid.waitFor(() => rows.every((row) => harness.sendgrid.deliveredTo(row.email).length === 1));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(rows.map((row) => harness.sendgrid.deliveredTo(row.email).length)).toEqual([1, 1, 1, 1, 1]);
  });

  test('administrator rows need an administrator', async () => {
    const { key } = await harness.addMember(uniqueEmail('user-admin'), ['user_administrator']);
    const rows = [
      { email: uniqueEmail('admin-wanted'), roles: ['administrator'] },
      { email: uniqueEmail('viewer-wanted'), roles: ['customer_viewer'] },
    ];

    const response = await submitJson(harness, rows, key);
    expect(response.status).toBe(202);
    const batch = await completedBatch(harness, response.body.batchId, 30_000);
    expect(batch.rows.map((row) => [row.status, row.reason])).toEqual([
      ['invalid', 'roles may include administrator only when an administrator submits the batch'],
      ['invited', null],
    ]);

    const byAdministrator = await submitJson(harness, [{ email: uniqueEmail('new-admin'), roles: ['administrator'] }]);
    expect(byAdministrator.status).toBe(202);
    const adminBatch = await completedBatch(harness, byAdministrator.body.batchId, 30_000);
    expect(adminBatch.rows[0]!.status).toBe('invited');
  });

  test('bad requests store nothing', async () => {
    const { key: viewerKey } = await harness.addMember(uniqueEmail('viewer'), ['customer_viewer']);
    const { key: productionKey } = await harness.addMember(uniqueEmail('prod-admin'), ['administrator'], harness.seed.productionId);
    const tooMany = Array.from({ length: 1001 }, (_, index) => ({ email: `p${index}@example.com`, roles: ['customer_viewer'] }));
    const tooManyCsv = ['email,roles', ...tooMany.map((row) => `${row.email},customer_viewer`)].join('\n');
    const before = await countBatches(harness);

    const cases = [
      { name: 'over 1000 JSON rows', send: () => submitJson(harness, tooMany), status: 413, code: 'too_many_rows', field: 'body.rows' },
      { name: 'over 1000 CSV rows', send: () => submitCsv(harness, tooManyCsv), status: 413, code: 'too_many_rows', field: 'body' },
      { name: 'no rows', send: () => submitJson(harness, []), status: 400, code: 'validation_failed', field: 'body.rows' },
      {
        name: 'row without roles',
        send: () => harness.api.post(batchPath(harness)).set('Authorization', `Bearer ${harness.seed.adminKey}`).send({ rows: [{ email: 'a@example.com' }] }),
        status: 400,
        code: 'validation_failed',
        field: 'body.rows.0.roles',
      },
      { name: 'wrong CSV header', send: () => submitCsv(harness, 'mail,role\na@example.com,customer_viewer\n'), status: 400, code: 'validation_failed', field: 'body' },
      { name: 'CSV header only', send: () => submitCsv(harness, 'email,roles\n'), status: 400, code: 'validation_failed', field: 'body' },
      { name: 'unclosed CSV quote', send: () => submitCsv(harness, 'email,roles\n"a@example.com,customer_viewer\n'), status: 400, code: 'validation_failed', field: 'body' },
      { name: 'NUL in CSV', send: () => submitCsv(harness, 'email,roles\na\u0000@example.com,customer_viewer\n'), status: 400, code: 'validation_failed', field: 'body' },
      {
        name: 'NUL in JSON',
        send: () => submitJson(harness, [{ email: 'a\u0000@example.com', roles: ['customer_viewer'] }]),
        status: 400,
        code: 'validation_failed',
        field: 'body.rows.0.email',
      },
      {
        name: 'plain text body',
        send: () => harness.api.post(batchPath(harness)).set('Authorization', `Bearer ${harness.seed.adminKey}`).set('Content-Type', 'text/plain').send('a@example.com'),
        status: 415,
        code: 'unsupported_media_type',
      },
      { name: 'no credential', send: () => harness.api.post(batchPath(harness)).send({ rows: [] }), status: 401, code: 'unauthorized' },
      { name: 'viewer', send: () => submitJson(harness, [{ email: 'a@example.com', roles: ['customer_viewer'] }], viewerKey), status: 403, code: 'forbidden' },
      {
        name: 'key of another environment',
        send: () => submitJson(harness, [{ email: 'a@example.com', roles: ['customer_viewer'] }], productionKey),
        status: 403,
        code: 'forbidden',
      },
    ];
    for (const item of cases) {
      const response = await item.send();
      expect({ name: item.name, status: response.status, code: response.body.error?.code }).toEqual({ name: item.name, status: item.status, code: item.code });
      if (item.field) {
        expect({ name: item.name, field: response.body.error.details[0].field }).toEqual({ name: item.name, field: item.field });
      }
    }
    const after = await countBatches(harness);
    expect(after).toBe(before);

    const stored = await submitJson(harness, [{ email: uniqueEmail('stored'), roles: ['customer_viewer'] }]);
    expect(stored.status).toBe(202);
    const reads = [
      { name: 'unknown batch', send: () => getBatch(harness, '7d2c9a4e-55a1-4d0c-9d7b-1f6f0c1e2a3b'), status: 404 },
      { name: 'malformed batch id', send: () => getBatch(harness, 'not-a-uuid'), status: 404 },
      { name: 'batch of another environment', send: () => getBatch(harness, stored.body.batchId, '', productionKey, 'production'), status: 404 },
      { name: 'viewer reads a batch', send: () => getBatch(harness, stored.body.batchId, '', viewerKey), status: 403 },
      { name: 'unknown status filter', send: () => getBatch(harness, stored.body.batchId, '?status=done'), status: 400 },
    ];
    for (const item of reads) {
      const response = await item.send();
      expect({ name: item.name, status: response.status }).toEqual({ name: item.name, status: item.status });
    }
    await completedBatch(harness, stored.body.batchId, 30_000);
  });

  // Activities run at least once: each is run again here, as Temporal would after a lost completion,
  // against the real database, Temporal server and worker.
  describe('activities run twice', () => {
    let activities: ReturnType<typeof createBulkActivities>;

    beforeAll(() => {
      activities = createBulkActivities({
        config: harness.config,
        db: harness.db,
        email: createEmailSender(harness.config, pino({ level: 'silent' })),
        tokenKey: deriveKey(harness.config.appSecret, 'invitation-token'),
        temporal: harness.temporal,
      });
    });

    /** Stores a batch with its rows as the API would, but starts no batch workflow. */
    async function storeBatch(rows: RowInput[]): Promise<{ batchId: string; environment: MockActivityEnvironment }> {
      const batchId = randomUUID();
      const workflowId = `batch-test-${batchId}`;
      await harness.db('batches').insert({
        id: batchId,
        account_id: harness.seed.accountId,
        environment_id: harness.seed.sandboxId,
        created_by_user_id: harness.seed.adminUserId,
        total_rows: rows.length,
        workflow_id: workflowId,
      });
      await harness.db('batch_rows').insert(rows.map((row, index) => ({ batch_id: batchId, row_number: index + 1, email: row.email, roles: row.roles })));
      return { batchId, environment: new MockActivityEnvironment({ workflowExecution: { workflowId, runId: randomUUID() } }, { logger: new DefaultLogger('WARN') }) };
    }

    /** Calls inviteBatchRow as the batch workflow does, again while it returns `recording`, at most 20 times. */
    async function inviteRow(environment: MockActivityEnvironment, batchId: string, rowNumber: number): Promise<BatchRowCheck> {
      let runId: string | undefined;
      for (let call = 0; call < 20; call += 1) {
        const input: Parameters<typeof activities.inviteBatchRow>[0] = { batchId, rowNumber, ...(runId ? { runId } : {}) };
        const result = await environment.run<[typeof input], BatchRowCheck, typeof activities.inviteBatchRow>(activities.inviteBatchRow, input);
        if (result.status !== 'recording') {
          return result;
        }
        runId = result.runId;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      throw new Error(`row ${rowNumber} of batch ${batchId} was still recording after 20 calls`);
    }

    test('inviteBatchRow twice invites once', async () => {
      const email = uniqueEmail('row-twice');
      const { batchId, environment } = await storeBatch([{ email, roles: ['customer_viewer'] }]);

      expect(await inviteRow(environment, batchId, 1)).toEqual({ status: 'invited' });
      expect(await inviteRow(environment, batchId, 1)).toEqual({ status: 'invited' });

      expect(await invitationsOfBatch(harness, batchId)).toHaveLength(1);
      await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    });

    test('retry finds its own invitation', async () => {
      // As if an earlier attempt started the invitation workflow and was lost before it updated the row.
      const email = uniqueEmail('row-lost');
      const { batchId, environment } = await storeBatch([{ email, roles: ['customer_viewer'] }]);
      const workflowId = invitationWorkflowId(deriveKey(harness.config.appSecret, 'workflow-id'), harness.seed.accountId, 'sandbox', email);
      await harness.temporal.workflow.start(invitationWorkflow, {
        workflowId,
        taskQueue: harness.config.temporal.taskQueue,
        args: [
          {
            accountId: harness.seed.accountId,
            environmentId: harness.seed.sandboxId,
            environment: 'sandbox',
            email,
            roles: ['customer_viewer'],
            invitedByUserId: harness.seed.adminUserId,
            timing: harness.config.invitation,
            batchId,
          },
        ],
      });

      expect(await inviteRow(environment, batchId, 1)).toEqual({ status: 'invited' });

      const invitations = await invitationsOfBatch(harness, batchId);
      expect(invitations).toHaveLength(1);
      expect(invitations[0]!.workflow_id).toBe(workflowId);
      const row = await harness.db('batch_rows').where({ batch_id: batchId, row_number: 1 }).first('invitation_id');
      expect(row.invitation_id).toBe(invitations[0]!.id);
    });

    test("someone else's invitation is not the row's", async () => {
      const email = uniqueEmail('row-taken');
      await harness.api
        .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
        .set('Authorization', `Bearer ${harness.seed.adminKey}`)
        .send({ email, roles: ['customer_viewer'] })
        .expect(202);
      const { batchId, environment } = await storeBatch([{ email, roles: ['invoice_viewer'] }]);

      expect(await inviteRow(environment, batchId, 1)).toEqual({ status: 'already_member' });

      const row = await harness.db('batch_rows').where({ batch_id: batchId, row_number: 1 }).first('error', 'invitation_id');
      expect(row).toEqual({ error: 'This person already has a pending invitation to this environment.', invitation_id: null });
      const invitations = await harness.db('invitations').where({ email_normalized: email }).select('batch_id');
      expect(invitations).toEqual([{ batch_id: null }]);
    });

    test('completeBatch twice audits once', async () => {
      const { batchId, environment } = await storeBatch([{ email: 'not an address', roles: ['customer_viewer'] }]);
      await harness.db('batch_rows').where({ batch_id: batchId }).update({ status: 'invalid', error: 'email must be a valid email address' });

      const first = await environment.run(activities.completeBatch, { batchId });
      const second = await environment.run(activities.completeBatch, { batchId });

      expect(first).toEqual({ total: 1, queued: 0, invited: 0, already_member: 0, invalid: 1, failed: 0 });
      expect(second).toEqual(first);
      const events = await harness.db('audit_events').where({ action: 'batch.completed' }).whereRaw("details->>'batchId' = ?", [batchId]);
      expect(events).toHaveLength(1);
      const batch = await harness.db('batches').where({ id: batchId }).first('status', 'completed_at');
      expect(batch.status).toBe('completed');
    });
  });

  (process.env.RECORD_HISTORIES === '1' ? describe : describe.skip)('record histories', () => {
    test('record completed batch', async () => {
      const member = uniqueEmail('recorded-member');
      await harness.addMember(member, ['customer_viewer']);
      const rows = [
        { email: uniqueEmail('recorded-a'), roles: ['customer_viewer'] },
        { email: 'not an address', roles: ['customer_viewer'] },
        { email: uniqueEmail('recorded-b'), roles: ['invoice_viewer'] },
        { email: member, roles: ['customer_viewer'] },
        { email: uniqueEmail('recorded-c'), roles: ['meter_viewer'] },
      ];
      const response = await submitJson(harness, rows);
      expect(response.status).toBe(202);
      const handle = harness.temporal.workflow.getHandle(response.body.workflowId);
      await handle.result();

      const json = execFileSync(
        process.env.LIFECYCLE_TEST_TEMPORAL_CLI!,
        ['workflow', 'show', '--workflow-id', handle.workflowId, '--run-id', (await handle.describe()).runId, '--output', 'json', '--address', harness.config.temporal.address],
        { encoding: 'utf8' },
      );
      const historyDir = fileURLToPath(new URL('./histories/', import.meta.url));
      await writeFile(`${historyDir}batch-completed.json`, json.endsWith('\n') ? json : `${json}\n`);
    });
  });
});

describe('worker restart during a batch', () => {
  const ROWS = 250;
  /** SendGrid requests held open while the worker is killed; see the test for why. */
  const HOLDS = 20;
  let harness: Harness;
  let worker: WorkerProcess | undefined;

  beforeAll(async () => {
    harness = await startHarness({ inProcessWorker: false, env: { BATCH_CONCURRENCY: '10' } });
  });

  afterAll(async () => {
    await worker?.stop();
    await harness?.close();
  });

  test('killed worker loses no row', async () => {
    worker = new WorkerProcess(harness.env);
    await worker.start();
    const rows = Array.from({ length: ROWS }, (_, index) => ({ email: uniqueEmail(`restart-${index}`), roles: ['customer_viewer'] }));
    const response = await submitJson(harness, rows);
    expect(response.status).toBe(202);
    const { sendgrid } = harness;

    await sendgrid.waitFor(() => sendgrid.delivered.length >= 100, 90_000);
    // A worker killed between SendGrid's 202 and the database write that records it would send that
    // email again, as at-least-once delivery allows. The test wants to see exactly one email per row,
    // so it keeps new SendGrid requests open and kills the worker only once no response is on its way.
    for (let index = 0; index < HOLDS; index += 1) {
      sendgrid.holdNext();
    }
    let heldBefore = -1;
    await eventually(
      async () => {
        const stable = sendgrid.heldCount === heldBefore || sendgrid.heldCount === HOLDS;
        heldBefore = sendgrid.heldCount;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        return stable && heldBefore > 0 ? true : undefined;
      },
      30_000,
      'held SendGrid requests to settle',
    );
    await worker.kill();
    sendgrid.releaseHeld(503);

    const midway = await getBatch(harness, response.body.batchId);
    expect(midway.body.status).toBe('running');
    const deliveredAtKill = sendgrid.delivered.length;
    expect(deliveredAtKill).toBeLessThan(ROWS);

    worker = new WorkerProcess(harness.env);
    await worker.start();
    // Holds not yet used would stall the new worker's emails. Each gets 503, which the email activity retries.
    await eventually(
      async () => {
        sendgrid.releaseHeld(503);
        const used = sendgrid.received.filter((mail) => mail.status === 503).length;
        return used >= HOLDS || rows.every((row) => sendgrid.deliveredTo(row.email).length > 0) ? true : undefined;
      },
      90_000,
      'unused holds to be answered',
    );

    const batch = await completedBatch(harness, response.body.batchId, 90_000);
    expect(batch.counts).toEqual({ total: ROWS, queued: 0, invited: ROWS, already_member: 0, invalid: 0, failed: 0 });
    const invitations = await invitationsOfBatch(harness, response.body.batchId);
    expect(invitations).toHaveLength(ROWS);
    expect(new Set(invitations.map((invitation) => invitation.email_normalized)).size).toBe(ROWS);

    await sendgrid.waitFor(() => rows.every((row) => sendgrid.deliveredTo(row.email).length >= 1), 90_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(rows.filter((row) => sendgrid.deliveredTo(row.email).length !== 1).map((row) => row.email)).toEqual([]);
    console.log(`worker killed after ${deliveredAtKill} of ${ROWS} emails; all rows invited once after the restart`);
  });
});
