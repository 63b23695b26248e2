import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { startEmbeddedPostgres, type RunningPostgres } from '../scripts/embedded-postgres.js';
import { freePort } from './support/global-setup.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';
import { listMembers, settledEmailRows, waitForActivityAttempt } from './support/outage-checks.js';

/**
 * A real Postgres restart under the API and the worker. The test runs a private cluster from the
 * embedded-postgres binaries on a free loopback port, because the machine's shared server must keep
 * running. Stopping it is a fast shutdown, which ends every session with SQLSTATE 57P01.
 */

let dataDir: string;
let port: number;
let postgres: RunningPostgres | undefined;
let harness: Harness;

function startPostgres(): Promise<RunningPostgres> {
  return startEmbeddedPostgres({ dataDir, port, database: 'lifecycle_restart' });
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'lifecycle-postgres-'));
  port = await freePort();
  postgres = await startPostgres();
  harness = await startHarness({ env: { DATABASE_URL: postgres.url, INVITE_TTL: '10m', INVITE_REMINDER_AFTER: '10s' } });
}, 120_000);

afterAll(async () => {
  await harness?.close();
  await postgres?.stop();
  if (dataDir) {
    await rm(dataDir, { recursive: true, force: true });
  }
});

describe('Postgres restart', () => {
  test('API and activities ride out a restart', async () => {
    const email = uniqueEmail('restart');
    const invited = await harness.invite(email);
    expect(invited.status).toBe(202);
    const { workflowId, id: invitationId } = invited.body.invitation;
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    // Stopping Postgres between SendGrid's 202 and the activity's record of it would send the email again.
    expect(await settledEmailRows(harness.db, invitationId)).toEqual([{ step: 'initial', status: 'sent' }]);

    // The pool keeps connections from the requests above open; the shutdown terminates them.
    await postgres!.stop();
    postgres = undefined;
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);

    const listed = await listMembers(harness);
    expect(listed.status).toBe(503);
    expect(listed.headers['retry-after']).toBe('5');
    expect(listed.body.error.code).toBe('database_unavailable');

    // The reminder falls due 10 s after the first email, while Postgres is down; its activity fails and is retried.
    await waitForActivityAttempt(harness, workflowId, 'sendInvitationEmail', 2);
    expect(harness.sendgrid.deliveredTo(email)).toHaveLength(1);

    postgres = await startPostgres();

    await eventually(async () => ((await listMembers(harness)).status === 200 ? true : undefined), 30_000, 'the API to answer 200 again');
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 2, 60_000);
    const emails = await settledEmailRows(harness.db, invitationId);
    expect(emails).toEqual([
      { step: 'initial', status: 'sent' },
      { step: 'reminder', status: 'sent' },
    ]);
  });
});
