import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { tokenIn } from './support/fake-sendgrid.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { freePort } from './support/sso-app.js';
import { ApiProcess, WorkerProcess } from './support/worker-process.js';

let harness: Harness;
let env: Record<string, string>;
let apiUrl: string;
let workerMetricsUrl: string;
const processes: (ApiProcess | WorkerProcess)[] = [];
let latestWorker: WorkerProcess | undefined;

beforeAll(async () => {
  harness = await startHarness({
    inProcessWorker: false,
    env: { SHUTDOWN_DRAIN_DELAY: '2s', SHUTDOWN_TIMEOUT: '30s', INVITE_REMINDER_AFTER: '1h' },
  });
  const apiPort = await freePort();
  const metricsPort = await freePort();
  env = { ...harness.env, PORT: String(apiPort), WORKER_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` };
  apiUrl = `http://127.0.0.1:${apiPort}`;
  workerMetricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
});

afterAll(async () => {
  for (const child of processes) {
    await child.stop('SIGKILL');
  }
  await harness?.close();
});

async function started<T extends ApiProcess | WorkerProcess>(child: T): Promise<T> {
  processes.push(child);
  await child.start();
  return child;
}

function invite(email: string): Promise<Response> {
  return fetch(`${apiUrl}/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${harness.seed.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ email, roles: ['customer_viewer'] }),
  });
}

/** Sums the samples of `name` whose labels include every pair in `labels`. */
function total(exposition: string, name: string, labels: Record<string, string>): number {
  return exposition
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) && Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`)))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

async function scrapeWorker(): Promise<string> {
  const response = await fetch(workerMetricsUrl);
  expect(response.status).toBe(200);
  return response.text();
}

describe('graceful shutdown', () => {
  test('SIGTERM loses no request or activity', async () => {
    const worker = await started(new WorkerProcess(env));
    const api = await started(new ApiProcess(env));

    // An email activity in flight in the worker: the fake keeps its SendGrid request open.
    const heldEmail = uniqueEmail('held');
    harness.sendgrid.holdNext();
    const held = await invite(heldEmail);
    expect(held.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.heldCount === 1);

    // Requests in flight at the API when SIGTERM arrives; each waits for its workflow to record the invitation.
    const emails = [1, 2, 3, 4, 5].map((index) => uniqueEmail(`in-flight-${index}`));
    const inFlight = emails.map((email) => invite(email));
    api.signal('SIGTERM');

    const readiness = await fetch(`${apiUrl}/readyz`);
    expect(readiness.status).toBe(503);
    expect(((await readiness.json()) as { status: string }).status).toBe('draining');
    const responses = await Promise.all(inFlight);
    expect(responses.map((response) => response.status)).toEqual([202, 202, 202, 202, 202]);
    expect(await api.exited()).toBe(0);
    await expect(fetch(`${apiUrl}/readyz`)).rejects.toThrow();
    expect(api.output.join('')).toContain('"API stopped"');

    // The worker stops while the held email is in flight; the activity finishes within the grace time.
    const workerExit = worker.exited();
    worker.signal('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    harness.sendgrid.releaseHeld(202);
    expect(await workerExit).toBe(0);
    expect(worker.output.join('')).toContain('"worker stopped"');

    // A new worker takes over whatever the first one handed back, and every invitation can be accepted.
    latestWorker = await started(new WorkerProcess(env));
    type Member = { invitation: { id: string; workflowId: string } };
    const members = (await Promise.all([held, ...responses].map((response) => response.json()))) as Member[];
    for (const [index, email] of [heldEmail, ...emails].entries()) {
      await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1, 30_000);
      const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
      const accepted = await harness.api.post('/v1/invitations/accept').send({ token, password: 'survived a shutdown' });
      expect(accepted.status).toBe(200);
      const result = await harness.temporal.workflow.getHandle(members[index]!.invitation.workflowId).result();
      expect(result.outcome).toBe('accepted');
    }

    // Exactly one email per invitation: none lost, none sent twice.
    for (const email of [heldEmail, ...emails]) {
      expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);
    }
    const sentRows = await harness.db('invitation_emails')
      .whereIn('invitation_id', members.map((member) => member.invitation.id))
      .select('step', 'status');
    expect(sentRows).toHaveLength(6);
    expect(sentRows.every((row) => row.step === 'initial' && row.status === 'sent')).toBe(true);
  });
});

describe('worker metrics', () => {
  test('SDK and activity series move', async () => {
    // The worker from the test above still runs; start one if this test runs alone.
    if (!latestWorker) {
      latestWorker = await started(new WorkerProcess(env));
    }
    const before = await scrapeWorker();
    const completed = { activityType: 'sendInvitationEmail', outcome: 'completed' };
    const willRetry = { activityType: 'sendInvitationEmail', outcome: 'will_retry' };

    // The first SendGrid request fails, so the email activity fails once and is retried.
    const email = uniqueEmail('metrics');
    harness.sendgrid.failNext(503);
    const invited = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email, roles: ['customer_viewer'] });
    expect(invited.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1, 30_000);

    const after = await eventually(async () => {
      const text = await scrapeWorker();
      return total(text, 'lifecycle_activity_attempts_total', completed) > total(before, 'lifecycle_activity_attempts_total', completed) ? text : undefined;
    }, 20_000, 'the completed count to rise');
    expect(total(after, 'lifecycle_activity_attempts_total', willRetry) - total(before, 'lifecycle_activity_attempts_total', willRetry)).toBe(1);
    expect(total(after, 'temporal_activity_execution_latency_count', {})).toBeGreaterThan(total(before, 'temporal_activity_execution_latency_count', {}));
    expect(total(after, 'temporal_activity_execution_failed_total', {}) - total(before, 'temporal_activity_execution_failed_total', {})).toBe(1);
    expect(after).toMatch(/^temporal_worker_task_slots_available\{/m);

    // The retry is logged with the ids that find it.
    const retryLine = latestWorker.output
      .join('')
      .split('\n')
      .find((line) => line.includes('"activity retry"') && line.includes(invited.body.invitation.workflowId));
    expect(retryLine).toBeDefined();
    expect(JSON.parse(retryLine!)).toMatchObject({ attempt: 2, activityType: 'sendInvitationEmail', workflowId: invited.body.invitation.workflowId });
  });
});
