import { createHash } from 'node:crypto';

import type { Request } from 'express';
import type { Knex } from 'knex';

import { idempotencyOwner } from './context.js';
import { HttpError } from './errors.js';

export interface StoredResponse {
  status: number;
  body: unknown;
}

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
/** A key can be reused for another request this long after its first use. */
const RETENTION = '24 hours';

function fingerprint(request: Request): string {
  return createHash('sha256')
    .update(`${request.method} ${request.originalUrl.split('?')[0]}\n`)
    .update(JSON.stringify(request.body ?? null))
    .digest('hex');
}

/**
 * Runs `handler` at most once per `Idempotency-Key` header and caller. A repeat with the same key and
 * body gets the first response again. A repeat with another body gets 422, and a repeat while the first
 * is still running gets 409. Only successful responses are kept, so after a failure the key is free again.
 */
export async function withIdempotency(
  db: Knex,
  request: Request,
  handler: () => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  const key = request.get('idempotency-key');
  if (key === undefined) {
    return { ...(await handler()), replayed: false };
  }
  if (!KEY_PATTERN.test(key)) {
    throw new HttpError(400, 'validation_failed', 'The request is invalid: Idempotency-Key must be 1 to 255 printable ASCII characters.', [
      { field: 'header.Idempotency-Key', rule: 'must be 1 to 255 printable ASCII characters' },
    ]);
  }
  const owner = idempotencyOwner(request.caller!);
  const requestFingerprint = fingerprint(request);

  await db('idempotency_keys')
    .where({ owner, key })
    .whereRaw(`created_at < now() - interval '${RETENTION}'`)
    .delete();
  const inserted = await db('idempotency_keys')
    .insert({ owner, key, request_fingerprint: requestFingerprint })
    .onConflict(['owner', 'key'])
    .ignore()
    .returning('key');

  if (inserted.length === 0) {
    const earlier = await db('idempotency_keys').where({ owner, key }).first();
    if (earlier.request_fingerprint !== requestFingerprint) {
      throw new HttpError(422, 'idempotency_key_reused', 'This Idempotency-Key was already used for a different request.');
    }
    if (earlier.status_code === null) {
      throw new HttpError(409, 'idempotency_key_in_progress', 'A request with this Idempotency-Key is still running; retry in a moment.');
    }
    return { status: earlier.status_code, body: earlier.response_body, replayed: true };
  }

  try {
    const response = await handler();
    await db('idempotency_keys')
      .where({ owner, key })
      .update({ status_code: response.status, response_body: JSON.stringify(response.body), completed_at: db.fn.now() });
    return { ...response, replayed: false };
  } catch (error) {
    await db('idempotency_keys').where({ owner, key }).delete();
    throw error;
  }
}
