import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import supertest from 'supertest';

import { ENCRYPTED_ENCODING } from '../../lib/payload-codec.js';
import type { FakeSendgrid } from './fake-sendgrid.js';

/**
 * Finds secrets in what a test file's harness recorded: the captured log lines of the API and worker,
 * and the history of every workflow on the harness's task queue. The secrets are collected while the
 * tests run: every password, token and client secret a test sends through supertest, every token in
 * an email the fake SendGrid received, and the configured secrets. Session tokens, API keys and
 * operator keys are also found by their format, wherever they came from.
 */

/** Body fields and query parameters whose values are secrets. */
const SECRET_FIELDS = new Set(['password', 'currentPassword', 'newPassword', 'token', 'clientSecret', 'client_secret']);

/** Passwords are at least 12 characters and tokens longer; shorter values are bad input, not secrets, and match common words. */
const MIN_SECRET_LENGTH = 12;

const CREDENTIAL_FORMATS: [string, RegExp][] = [
  ['session token', /\bls_[A-Za-z0-9_-]{43}/g],
  ['API key', /\blc_[0-9a-f]{12}_[A-Za-z0-9_-]{43}/g],
  ['operator key', /\blo_[0-9a-f]{12}_[A-Za-z0-9_-]{43}/g],
];

/** Secrets the tests of this file sent through supertest. Jest gives every test file its own module instance. */
const sentSecrets = new Set<string>();

/** Returns a copy of the secrets recorded from requests so far, for tests of the scan itself. */
export function recordedSecrets(): Set<string> {
  return new Set(sentSecrets);
}

function record(value: unknown): void {
  if (typeof value === 'string' && value.length >= MIN_SECRET_LENGTH) {
    sentSecrets.add(value);
  }
}

function collectFields(value: unknown): void {
  if (Array.isArray(value)) {
    value.forEach(collectFields);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (SECRET_FIELDS.has(key)) {
        record(item);
      }
      collectFields(item);
    }
  }
}

function collectText(text: string): void {
  try {
    collectFields(JSON.parse(text));
  } catch {
    // A form body or CSV, not JSON.
    collectFields(Object.fromEntries(new URLSearchParams(text)));
  }
}

interface RecordingTest {
  send(data?: unknown): unknown;
  query(value: unknown): unknown;
  set(field: unknown, value?: unknown): unknown;
}

let installed = false;

/** Patches supertest's request class once per test file, so that every request records the secrets it carries. */
export function recordSentSecrets(): void {
  if (installed) {
    return;
  }
  installed = true;
  const prototype = (supertest as unknown as { Test: { prototype: RecordingTest } }).Test.prototype;
  const { send, query, set } = prototype;
  prototype.send = function recordingSend(this: RecordingTest, data?: unknown) {
    if (typeof data === 'string') {
      collectText(data);
    } else {
      collectFields(data);
    }
    return send.call(this, data);
  };
  prototype.query = function recordingQuery(this: RecordingTest, value: unknown) {
    if (typeof value === 'string') {
      collectText(value);
    } else {
      collectFields(value);
    }
    return query.call(this, value);
  };
  prototype.set = function recordingSet(this: RecordingTest, field: unknown, value?: unknown) {
    if (typeof field === 'string' && typeof value === 'string' && /^(authorization|cookie)$/i.test(field)) {
      record(value.replace(/^Bearer\s+/i, '').replace(/^lc_session=/, '').split(';')[0]);
    }
    return set.call(this, field, value);
  };
}

/** Returns every token that appears in a link of an email the fake SendGrid received. */
function mailedTokens(sendgrid: FakeSendgrid): string[] {
  return sendgrid.delivered.flatMap((mail) =>
    mail.body.content.flatMap((part) => [...part.value.matchAll(/[?&]token=([A-Za-z0-9_%-]+)/g)].map((match) => decodeURIComponent(match[1]!))),
  );
}

/**
 * Replaces each encrypted payload in a history with its decrypted form, in place, so that the scan reads
 * what the payload codec protects as well as what it leaves in the clear.
 */
async function decryptPayloads(value: unknown, codec: PayloadCodec): Promise<void> {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) {
    return;
  }
  const record = value as Record<string, unknown>;
  for (const [key, child] of Object.entries(record)) {
    const metadata = (child as { metadata?: Record<string, Uint8Array> } | null)?.metadata;
    if (metadata?.encoding && Buffer.from(metadata.encoding).toString('utf8') === ENCRYPTED_ENCODING) {
      [record[key]] = await codec.decode([child as Payload]);
    } else {
      await decryptPayloads(child, codec);
    }
  }
}

/** Serializes a workflow history with its payloads as text, because payload data is stored as bytes. */
function historyText(history: unknown): string {
  return JSON.stringify(history, (_key, value: unknown) => (value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : value));
}

export interface ScanSources {
  logLines: string[];
  sendgrid: FakeSendgrid;
  temporal: Client;
  /** Decrypts the histories' payloads before they are scanned. */
  payloadCodec: PayloadCodec;
  taskQueue: string;
  /** Secrets from the configuration, such as APP_SECRET and the SendGrid API key. */
  configuredSecrets: string[];
  /** Secrets the caller knows of beyond those recorded here, for tests of the scan itself. */
  extraSecrets?: string[];
}

export interface Leak {
  where: string;
  /** The kind of secret, with its first characters. */
  kind: string;
}

/** Redacts all but the start of a secret, so the report does not spread it further. */
function redact(secret: string): string {
  return `${secret.slice(0, 6)}…(${secret.length} characters)`;
}

function findIn(where: string, text: string, secrets: Set<string>, leaks: Leak[]): void {
  for (const [name, pattern] of CREDENTIAL_FORMATS) {
    for (const match of text.matchAll(pattern)) {
      leaks.push({ where: `${where} after ${JSON.stringify(text.slice(Math.max(0, match.index - 40), match.index))}`, kind: `${name} ${redact(match[0])}` });
    }
  }
  for (const secret of secrets) {
    const index = text.indexOf(secret);
    if (index >= 0) {
      leaks.push({ where: `${where} after ${JSON.stringify(text.slice(Math.max(0, index - 40), index))}`, kind: `secret ${redact(secret)}` });
    }
  }
}

/** Scans the log lines and the workflow histories of one harness; returns every secret found, with where. */
export async function scanForSecrets(sources: ScanSources): Promise<Leak[]> {
  const secrets = new Set([...sentSecrets, ...mailedTokens(sources.sendgrid), ...(sources.extraSecrets ?? [])]);
  for (const secret of sources.configuredSecrets) {
    if (secret.length >= MIN_SECRET_LENGTH) {
      secrets.add(secret);
    }
  }

  const leaks: Leak[] = [];
  sources.logLines.forEach((line, index) => findIn(`log line ${index + 1}`, line, secrets, leaks));
  for await (const execution of sources.temporal.workflow.list({ query: `TaskQueue = '${sources.taskQueue}'` })) {
    const history = await sources.temporal.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
    await decryptPayloads(history, sources.payloadCodec);
    findIn(`history of ${execution.workflowId} (${execution.runId})`, historyText(history), secrets, leaks);
  }
  return leaks;
}

export function describeLeaks(leaks: Leak[]): string {
  return `Secrets found in logs or workflow histories:\n${leaks.map((leak) => `  ${leak.where}: ${leak.kind}`).join('\n')}`;
}
