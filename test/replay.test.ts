import { readdir, readFile } from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { fileURLToPath } from 'node:url';

import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker, type ReplayResult } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';

import { encryptionKeys } from '../lib/config.js';
import { dataConverter, FAILURE_CONVERTER_PATH } from '../lib/data-converter.js';
import { AesGcmPayloadCodec } from '../lib/payload-codec.js';
import type { InvitationOutcome } from '../workflows/invitation.js';
import { connectWorker, createActivities, WORKFLOWS_PATH } from '../worker/create-worker.js';
import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, TEST_PAYLOAD_KEYS, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { HISTORY_DIR, recordHistory } from './support/histories.js';
import { startRejectedInvitation } from './support/rejected-invitation.js';

/**
 * Replays recorded workflow histories against the current workflow code. A change that would break
 * invitations already running in production (a new activity call, a reordered step) fails here.
 * Keep old histories when a change is deliberate and guarded with `patched()`; record new ones with
 * `RECORD_HISTORIES=1 npm test -- test/replay.test.ts`.
 */

const RECORDING = process.env.RECORD_HISTORIES === '1';

async function loadHistories(): Promise<{ name: string; json: unknown }[]> {
  const files = (await readdir(HISTORY_DIR)).filter((file) => file.endsWith('.json')).sort();
  return Promise.all(files.map(async (file) => ({ name: file, json: JSON.parse(await readFile(HISTORY_DIR + file, 'utf8')) })));
}

(RECORDING ? describe : describe.skip)('record histories', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({
      env: { INVITE_TTL: '5s', INVITE_REMINDER_AFTER: '1s', INVITE_RESEND_COOLDOWN: '1s', INVITE_MAX_RESENDS: '3' },
    });
  });

  afterAll(async () => {
    await harness?.close();
  });

  const save = (name: string, workflowId: string) => recordHistory(harness.temporal, harness.config.temporal.address, name, workflowId);

  function path(suffix = ''): string {
    return `/v1/accounts/${harness.seed.accountId}/environments/sandbox/users${suffix}`;
  }

  async function invite(email: string) {
    const response = await harness.api
      .post(path())
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email, roles: ['customer_viewer'] });
    expect(response.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    return response.body;
  }

  test('record accepted invitation', async () => {
    const email = uniqueEmail('accepted');
    const member = await invite(email);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
    await harness.api.post('/v1/invitations/accept').send({ token, password: 'recorded history password' }).expect(200);
    await save('invitation-accepted', member.invitation.workflowId);
  });

  test('record encrypted accepted invitation', async () => {
    // Recorded with the payload codec and the member-status search attribute; the one above predates both.
    const email = uniqueEmail('encrypted');
    const member = await invite(email);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
    await harness.api.post('/v1/invitations/accept').send({ token, password: 'recorded history password' }).expect(200);
    await save('invitation-accepted-encrypted', member.invitation.workflowId);
  });

  test('record local activity invitations', async () => {
    // Both steps run as local activities since the patches in INVITATION_PATCHES. The histories above predate them.
    const accepted = uniqueEmail('local-accepted');
    const acceptedMember = await invite(accepted);
    const token = tokenIn(harness.sendgrid.deliveredTo(accepted)[0]!);
    await harness.api.post('/v1/invitations/accept').send({ token, password: 'recorded history password' }).expect(200);
    await save('invitation-local-accepted', acceptedMember.invitation.workflowId);

    const revokedMember = await invite(uniqueEmail('local-revoked'));
    await harness.api.post(path(`/${revokedMember.id}/invitation/revoke`)).set('Authorization', `Bearer ${harness.seed.adminKey}`).expect(200);
    await save('invitation-local-revoked', revokedMember.invitation.workflowId);
  });

  test('record reminded and expired invitation', async () => {
    const member = await invite(uniqueEmail('expired'));
    await save('invitation-reminded-expired', member.invitation.workflowId);
  });

  test('record resent and revoked invitation', async () => {
    const member = await invite(uniqueEmail('revoked'));
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const authorization = `Bearer ${harness.seed.adminKey}`;
    await harness.api.post(path(`/${member.id}/invitation/resend`)).set('Authorization', authorization).expect(200);
    await harness.api.post(path(`/${member.id}/invitation/revoke`)).set('Authorization', authorization).expect(200);
    await save('invitation-resent-revoked', member.invitation.workflowId);
  });

  test('record rejected invitation', async () => {
    const workflowId = await startRejectedInvitation(harness, 'member');
    // This records the newest path, with the member status that the rejection reveals. The older
    // invitation-rejected.json (a normal activity) and invitation-local-rejected.json (before the
    // member status) keep the earlier paths.
    await save('invitation-rejected-member-status', workflowId);
  });
});

/** Replay options: the test suite's payload key decrypts histories recorded with the codec, and others pass through. */
const REPLAY_OPTIONS = {
  workflowsPath: WORKFLOWS_PATH,
  dataConverter: { payloadCodecs: [new AesGcmPayloadCodec(encryptionKeys.parse(TEST_PAYLOAD_KEYS))], failureConverterPath: FAILURE_CONVERTER_PATH },
};

describe('workflow replay', () => {
  test('recorded histories replay cleanly', async () => {
    const histories = await loadHistories();
    expect(histories.map((history) => history.name)).toEqual(
      expect.arrayContaining([
        'invitation-accepted.json',
        'invitation-accepted-encrypted.json',
        'invitation-reminded-expired.json',
        'invitation-resent-revoked.json',
        'invitation-rejected.json',
        'invitation-local-accepted.json',
        'invitation-local-revoked.json',
        'invitation-local-rejected.json',
        'invitation-rejected-member-status.json',
      ]),
    );
    for (const { name, json } of histories) {
      await expect(Worker.runReplayHistory(REPLAY_OPTIONS, historyFromJSON(json), name)).resolves.toBeUndefined();
    }
  });

  test('tampered history fails replay', async () => {
    const accepted = (await loadHistories()).find((history) => history.name === 'invitation-accepted.json');
    const tampered = structuredClone(accepted!.json) as { events: { activityTaskScheduledEventAttributes?: { activityType: { name: string } } }[] };
    const scheduled = tampered.events.find((event) => event.activityTaskScheduledEventAttributes);
    scheduled!.activityTaskScheduledEventAttributes!.activityType.name = 'someOtherActivity';

    await expect(Worker.runReplayHistory(REPLAY_OPTIONS, historyFromJSON(tampered), 'tampered')).rejects.toThrow(
      DeterminismViolationError,
    );
  });
});

/** The invitation workflow with one added activity, without and with `patched()`; see test/fixtures/workflow-change. */
const CHANGED_WORKFLOWS = {
  unpatched: fileURLToPath(new URL('./fixtures/workflow-change/unpatched.ts', import.meta.url)),
  patched: fileURLToPath(new URL('./fixtures/workflow-change/patched.ts', import.meta.url)),
};

/** Histories of the invitation workflow, in the order loadHistories returns them. */
const INVITATION_HISTORIES = ['invitation-accepted.json', 'invitation-rejected.json', 'invitation-reminded-expired.json', 'invitation-resent-revoked.json'];

async function replayAll(workflowsPath: string, histories: { name: string; history: Parameters<typeof Worker.runReplayHistory>[1] }[]) {
  const results: ReplayResult[] = [];
  const iterable = histories.map(({ name, history }) => ({ workflowId: name, history }));
  for await (const result of Worker.runReplayHistories({ ...REPLAY_OPTIONS, workflowsPath }, iterable)) {
    results.push(result);
  }
  return results;
}

async function oldInvitationHistories() {
  const histories = (await loadHistories()).filter((history) => INVITATION_HISTORIES.includes(history.name));
  expect(histories.map((history) => history.name)).toEqual(INVITATION_HISTORIES);
  return histories.map(({ name, json }) => ({ name, history: historyFromJSON(json) }));
}

describe('workflow change and patched()', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({ inProcessWorker: false, env: { INVITE_TTL: '1h', INVITE_REMINDER_AFTER: '30m' } });
  });

  afterAll(async () => {
    await harness?.close();
  });

  test('change without patched() fails replay', async () => {
    const results = await replayAll(CHANGED_WORKFLOWS.unpatched, await oldInvitationHistories());
    expect(results).toHaveLength(INVITATION_HISTORIES.length);
    for (const result of results) {
      expect({ history: result.workflowId, failed: result.error instanceof DeterminismViolationError }).toEqual({
        history: result.workflowId,
        failed: true,
      });
    }
  });

  test('patched() replays old and new histories', async () => {
    // A new history: an invitation that runs on the patched code from its start, and gets accepted.
    const recordedOutcomes: InvitationOutcome[] = [];
    const dependencies = harness.activityDependencies();
    const connection = await connectWorker(harness.config);
    const worker = await Worker.create({
      connection,
      namespace: harness.config.temporal.namespace,
      taskQueue: harness.config.temporal.taskQueue,
      workflowsPath: CHANGED_WORKFLOWS.patched,
      dataConverter: dataConverter(harness.config),
      activities: {
        ...createActivities(dependencies),
        recordInvitationOutcome: async (outcome: InvitationOutcome) => {
          recordedOutcomes.push(outcome);
        },
      },
    });
    const email = uniqueEmail(uniqueId('patched'));
    const workflowId = await worker.runUntil(async () => {
      const invited = await harness.invite(email);
      expect(invited.status).toBe(202);
      await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
      const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
      await harness.api.post('/v1/invitations/accept').send({ token, password: 'patched workflow password' }).expect(200);
      await harness.temporal.workflow.getHandle(invited.body.invitation.workflowId).result();
      return invited.body.invitation.workflowId as string;
    });
    await connection.close();
    expect(recordedOutcomes.map((outcome) => outcome.outcome)).toEqual(['accepted']);

    const newHistory = await harness.temporal.workflow.getHandle(workflowId).fetchHistory();
    // Patch markers keep their id in plaintext, so the fixture's one can be picked out of the product's own.
    const markers = newHistory.events!.filter((event) =>
      Buffer.from(event.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0]?.data ?? []).toString().includes('record-invitation-outcome'),
    );
    expect(markers).toHaveLength(1);
    expect(markers[0]!.markerRecordedEventAttributes!.markerName).toBe('core_patch');

    const results = await replayAll(CHANGED_WORKFLOWS.patched, [...(await oldInvitationHistories()), { name: 'patched-new', history: newHistory }]);
    expect(results.map((result) => ({ history: result.workflowId, error: result.error }))).toEqual(
      [...INVITATION_HISTORIES, 'patched-new'].map((name) => ({ history: name, error: undefined })),
    );
  });
});
