import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { pino } from 'pino';

import { createApp } from '../api/app.js';
import { encryptionKeys } from '../lib/config.js';
import { FAILURE_CONVERTER_PATH } from '../lib/data-converter.js';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING, PayloadCodecError } from '../lib/payload-codec.js';
import { generateOperatorKey } from '../lib/secrets.js';
import { WORKFLOWS_PATH } from '../worker/create-worker.js';
import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, TEST_PAYLOAD_KEYS, uniqueEmail, type Harness } from './support/harness.js';

/** Payload encryption: what history holds, key rotation, and the codec server for operators. */

const TEST_KEYS = encryptionKeys.parse(TEST_PAYLOAD_KEYS);
const NEW_KEY = { id: 'rotated-2027', key: randomBytes(32) };
const PASSWORD = 'correct horse battery staple';

let harness: Harness;
let operatorKey: string;

beforeAll(async () => {
  harness = await startHarness();
  const generated = generateOperatorKey();
  await harness.db('operator_api_keys').insert({ name: 'codec test', prefix: generated.prefix, secret_hash: generated.secretHash });
  operatorKey = generated.key;
});

afterAll(async () => {
  await harness?.close();
});

function jsonPayload(value: unknown): Payload {
  return defaultPayloadConverter.toPayload(value);
}

function encodingOf(payload: Payload): string {
  return Buffer.from(payload.metadata!.encoding!).toString('utf8');
}

/**
 * Collects every payload in a history, with its path: any object with `metadata.encoding`. Search
 * attributes stay plaintext, because the server indexes them, and so do the SDK's patch markers.
 */
function payloadsIn(value: unknown, path = '', found: { path: string; payload: Payload }[] = []) {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) {
    return found;
  }
  const record = value as Record<string, unknown>;
  const metadata = record.metadata as Record<string, unknown> | undefined;
  if (metadata && typeof metadata === 'object' && 'encoding' in metadata) {
    found.push({ path, payload: record as unknown as Payload });
    return found;
  }
  for (const [key, child] of Object.entries(record)) {
    payloadsIn(child, `${path}.${key}`, found);
  }
  return found;
}

/**
 * Payloads that the SDK or Temporal writes unencoded: search attributes, patch markers, and the
 * bookkeeping of a local activity's marker (sequence number, attempt, activity type and times). The
 * local activity's result in the same marker is encoded.
 */
const PLAINTEXT_BY_DESIGN = [
  /\.searchAttributes\.indexedFields\.(Lifecycle\w+|TemporalChangeVersion)$/,
  /\.markerRecordedEventAttributes\.details\.patch-data\.payloads\.\d+$/,
  /\.markerRecordedEventAttributes\.details\.data\.payloads\.\d+$/,
];

/** Invites a person and accepts the invitation, then returns the finished workflow's id. */
async function inviteAndAccept(email: string): Promise<string> {
  const invited = await harness.api
    .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
    .set('Authorization', `Bearer ${harness.seed.adminKey}`)
    .send({ email, roles: ['customer_viewer'] });
  expect(invited.status).toBe(202);
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);

  const accepted = await harness.api.post('/v1/invitations/accept').send({ token: tokenIn(harness.sendgrid.deliveredTo(email)[0]!), password: PASSWORD });
  expect(accepted.status).toBe(200);
  const workflowId = invited.body.invitation.workflowId as string;
  await harness.temporal.workflow.getHandle(workflowId).result();
  return workflowId;
}

describe('payload codec', () => {
  test('round trip', async () => {
    const codec = new AesGcmPayloadCodec(TEST_KEYS);
    const original = jsonPayload({ email: 'ada@example.com' });

    const [encoded] = await codec.encode([original]);
    expect(encodingOf(encoded!)).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(encoded!.data!).toString('latin1')).not.toContain('ada@example.com');

    const [decoded] = await codec.decode([encoded!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ email: 'ada@example.com' });
  });

  test('plaintext passes through decode', async () => {
    const codec = new AesGcmPayloadCodec(TEST_KEYS);
    const plain = jsonPayload('recorded before encryption');

    const [decoded] = await codec.decode([plain]);
    expect(decoded).toBe(plain);
  });

  test('old key still decodes', async () => {
    const [encodedWithOld] = await new AesGcmPayloadCodec(TEST_KEYS).encode([jsonPayload(42)]);
    const rotated = new AesGcmPayloadCodec([NEW_KEY, ...TEST_KEYS]);

    const [decoded] = await rotated.decode([encodedWithOld!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toBe(42);
    const [encodedWithNew] = await rotated.encode([jsonPayload(43)]);
    expect(Buffer.from(encodedWithNew!.metadata!['encryption-key-id']!).toString('utf8')).toBe(NEW_KEY.id);
  });

  test('unknown key rejected', async () => {
    const [encoded] = await new AesGcmPayloadCodec([NEW_KEY]).encode([jsonPayload('secret')]);

    await expect(new AesGcmPayloadCodec(TEST_KEYS).decode([encoded!])).rejects.toThrow(PayloadCodecError);
    await expect(new AesGcmPayloadCodec(TEST_KEYS).decode([encoded!])).rejects.toThrow('rotated-2027');
  });

  test('tampered ciphertext rejected', async () => {
    const codec = new AesGcmPayloadCodec(TEST_KEYS);
    const [encoded] = await codec.encode([jsonPayload('secret')]);
    const data = Buffer.from(encoded!.data!);
    data[20] = data[20]! ^ 1;

    await expect(codec.decode([{ ...encoded!, data }])).rejects.toThrow('failed authentication');
  });

  test('relabelled key id rejected', async () => {
    const codec = new AesGcmPayloadCodec([...TEST_KEYS, { id: 'other', key: TEST_KEYS[0]!.key }]);
    const [encoded] = await codec.encode([jsonPayload('secret')]);
    const relabelled = { ...encoded!, metadata: { ...encoded!.metadata, 'encryption-key-id': Buffer.from('other') } };

    await expect(codec.decode([relabelled])).rejects.toThrow('failed authentication');
  });
});

describe('workflow history', () => {
  test('holds only ciphertext', async () => {
    const email = uniqueEmail('private');
    const workflowId = await inviteAndAccept(email);

    const history = await harness.temporal.workflow.getHandle(workflowId).fetchHistory();
    const payloads = payloadsIn(history);
    const plaintext = payloads.filter(({ payload }) => encodingOf(payload) !== ENCRYPTED_ENCODING);
    const encrypted = payloads.length - plaintext.length;
    expect(encrypted).toBeGreaterThan(5);
    for (const { path } of plaintext) {
      expect(PLAINTEXT_BY_DESIGN.some((pattern) => pattern.test(path))).toBe(true);
    }
    // The recording runs as a local activity, whose result is stored in a marker and must be encrypted too.
    const localResults = payloads.filter(({ path }) => /\.markerRecordedEventAttributes\.details\.result\.payloads\.\d+$/.test(path));
    expect(localResults.length).toBeGreaterThan(0);
    expect(localResults.every(({ payload }) => encodingOf(payload) === ENCRYPTED_ENCODING)).toBe(true);
    const text = JSON.stringify(history, (_key, value: unknown) => (ArrayBuffer.isView(value) ? Buffer.from(value as Uint8Array).toString('latin1') : value));
    expect(text).not.toContain(email);
    expect(text).not.toContain(email.split('@')[0]);
    expect(text).not.toContain('customer_viewer');
  });

  test('failure messages encoded', async () => {
    // SendGrid rejecting the address fails the email activity for good, with the provider's message.
    const email = uniqueEmail('bounced');
    harness.sendgrid.failNext(400);
    const invited = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email, roles: ['customer_viewer'] });
    expect(invited.status).toBe(202);
    const handle = harness.temporal.workflow.getHandle(invited.body.invitation.workflowId as string);
    expect((await handle.result()).outcome).toBe('revoked');

    const history = await handle.fetchHistory();
    const failures = history.events!.flatMap((event) =>
      event.activityTaskFailedEventAttributes?.failure ? [event.activityTaskFailedEventAttributes.failure] : [],
    );
    expect(failures.length).toBeGreaterThanOrEqual(1);
    for (const failure of failures) {
      expect(failure.message).toBe('Encoded failure');
      expect(failure.encodedAttributes).toBeTruthy();
    }
  });

  test('replays with rotated keys', async () => {
    const workflowId = await inviteAndAccept(uniqueEmail('replayed'));
    const history = await harness.temporal.workflow.getHandle(workflowId).fetchHistory();

    await expect(
      Worker.runReplayHistory(
        {
          workflowsPath: WORKFLOWS_PATH,
          dataConverter: { payloadCodecs: [new AesGcmPayloadCodec([NEW_KEY, ...TEST_KEYS])], failureConverterPath: FAILURE_CONVERTER_PATH },
        },
        history,
        workflowId,
      ),
    ).resolves.toBeUndefined();
  });

  test('client with rotated keys reads results', async () => {
    const workflowId = await inviteAndAccept(uniqueEmail('rotated'));
    const connection = await Connection.connect({ address: harness.config.temporal.address });
    try {
      const rotated = new Client({
        connection,
        namespace: harness.config.temporal.namespace,
        dataConverter: { payloadCodecs: [new AesGcmPayloadCodec([NEW_KEY, ...TEST_KEYS])], failureConverterPath: FAILURE_CONVERTER_PATH },
      });
      const outcome = await rotated.workflow.getHandle(workflowId).result();
      expect(outcome.outcome).toBe('accepted');
    } finally {
      await connection.close();
    }
  });
});

describe('codec server', () => {
  async function encryptedSample(value: unknown) {
    const [encoded] = await new AesGcmPayloadCodec(TEST_KEYS).encode([jsonPayload(value)]);
    return {
      metadata: Object.fromEntries(Object.entries(encoded!.metadata!).map(([name, bytes]) => [name, Buffer.from(bytes).toString('base64')])),
      data: Buffer.from(encoded!.data!).toString('base64'),
    };
  }

  test('decodes for an operator key', async () => {
    const payload = await encryptedSample({ email: 'ada@example.com' });

    const response = await harness.api.post('/codec/decode').set('Authorization', `Bearer ${operatorKey}`).set('X-Namespace', 'default').send({ payloads: [payload] });
    expect(response.status).toBe(200);
    const [decoded] = response.body.payloads;
    expect(Buffer.from(decoded.metadata.encoding, 'base64').toString()).toBe('json/plain');
    expect(JSON.parse(Buffer.from(decoded.data, 'base64').toString())).toEqual({ email: 'ada@example.com' });
  });

  test('encode then decode', async () => {
    const plain = { metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"hello"').toString('base64') };

    const encoded = await harness.api.post('/codec/encode').set('Authorization', `Bearer ${operatorKey}`).send({ payloads: [plain] });
    expect(encoded.status).toBe(200);
    expect(Buffer.from(encoded.body.payloads[0].metadata.encoding, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
    const decoded = await harness.api.post('/codec/decode').set('Authorization', `Bearer ${operatorKey}`).send(encoded.body);
    expect(decoded.body.payloads[0].data).toBe(plain.data);
  });

  test('rejects callers without an operator key', async () => {
    const body = { payloads: [await encryptedSample('secret')] };

    const anonymous = await harness.api.post('/codec/decode').send(body);
    expect(anonymous.status).toBe(401);
    const apiKey = await harness.api.post('/codec/decode').set('Authorization', `Bearer ${harness.seed.adminKey}`).send(body);
    expect(apiKey.status).toBe(403);
    const unknown = await harness.api.post('/codec/decode').set('Authorization', `Bearer ${generateOperatorKey().key}`).send(body);
    expect(unknown.status).toBe(401);
  });

  test('bad body names the field', async () => {
    const response = await harness.api.post('/codec/decode').set('Authorization', `Bearer ${operatorKey}`).send({ payloads: [{ data: 'not base64!' }] });
    expect(response.status).toBe(400);
    expect(response.body.error.details[0].field).toBe('body.payloads.0.data');
  });

  test('undecodable payload gives 422', async () => {
    const [foreign] = await new AesGcmPayloadCodec([NEW_KEY]).encode([jsonPayload('secret')]);
    const payload = {
      metadata: Object.fromEntries(Object.entries(foreign!.metadata!).map(([name, bytes]) => [name, Buffer.from(bytes).toString('base64')])),
      data: Buffer.from(foreign!.data!).toString('base64'),
    };

    const response = await harness.api.post('/codec/decode').set('Authorization', `Bearer ${operatorKey}`).send({ payloads: [payload] });
    expect(response.status).toBe(422);
    expect(response.body.error.code).toBe('payload_not_decodable');
  });

  test('CORS preflight for the Web UI', async () => {
    const allowed = await harness.api
      .options('/codec/decode')
      .set('Origin', 'http://localhost:8233')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'content-type,x-namespace');
    expect(allowed.status).toBe(204);
    expect(allowed.headers['access-control-allow-origin']).toBe('http://localhost:8233');
    expect(allowed.headers['access-control-allow-credentials']).toBe('true');
    expect(allowed.headers['access-control-allow-headers']).toContain('X-Namespace');

    const other = await harness.api.options('/codec/decode').set('Origin', 'https://elsewhere.example').set('Access-Control-Request-Method', 'POST');
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('browser sign-in cookie works', async () => {
    const wrong = await harness.api.post('/codec/session').type('form').send({ operatorKey: 'lo_wrong' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();

    const signedIn = await harness.api.post('/codec/session').type('form').send({ operatorKey });
    expect(signedIn.status).toBe(200);
    const cookie = (signedIn.headers['set-cookie'] as unknown as string[]).find((line) => line.startsWith('lc_codec='))!;
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).toContain('Path=/codec');
    expect(cookie).not.toContain(operatorKey);

    const body = { payloads: [await encryptedSample('via cookie')] };
    const decoded = await harness.api.post('/codec/decode').set('Origin', 'http://localhost:8233').set('Cookie', cookie.split(';')[0]!).send(body);
    expect(decoded.status).toBe(200);
    expect(decoded.headers['access-control-allow-origin']).toBe('http://localhost:8233');
    expect(JSON.parse(Buffer.from(decoded.body.payloads[0].data, 'base64').toString())).toBe('via cookie');

    const forged = cookie.split(';')[0]!.replace(/.$/, (last) => (last === 'A' ? 'B' : 'A'));
    const rejected = await harness.api.post('/codec/decode').set('Cookie', forged).send(body);
    expect(rejected.status).toBe(401);
  });

  test('revoked key ends the cookie', async () => {
    const generated = generateOperatorKey();
    await harness.db('operator_api_keys').insert({ name: 'revoked later', prefix: generated.prefix, secret_hash: generated.secretHash });
    const signedIn = await harness.api.post('/codec/session').type('form').send({ operatorKey: generated.key });
    const cookie = (signedIn.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
    await harness.db('operator_api_keys').where({ prefix: generated.prefix }).update({ revoked_at: harness.db.fn.now() });

    const response = await harness.api.post('/codec/decode').set('Cookie', cookie).send({ payloads: [await encryptedSample('x')] });
    expect(response.status).toBe(401);
  });

  test('Temporal CLI decodes through it', async () => {
    const email = uniqueEmail('shown-to-operator');
    const workflowId = await inviteAndAccept(email);
    const app = createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const codecEndpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/codec`;

    // Returns the payload data of the history as the CLI prints it, base64 decoded.
    const show = async (extra: string[]) => {
      const args = ['workflow', 'show', '--workflow-id', workflowId, '--address', harness.config.temporal.address, '--output', 'json', ...extra];
      const { stdout } = await promisify(execFile)(process.env.LIFECYCLE_TEST_TEMPORAL_CLI!, args, { encoding: 'utf8' });
      const data: string[] = [];
      JSON.parse(stdout, (key, value: unknown) => {
        if (key === 'data' && typeof value === 'string') {
          data.push(Buffer.from(value, 'base64').toString('latin1'));
        }
        return value;
      });
      return data.join('\n');
    };
    try {
      expect(await show([])).not.toContain(email);
      expect(await show(['--codec-endpoint', codecEndpoint, '--codec-auth', `Bearer ${operatorKey}`])).toContain(email);
    } finally {
      server.close();
    }
  });
});
