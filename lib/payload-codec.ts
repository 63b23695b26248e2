import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

/**
 * Encrypts every payload that Temporal stores (workflow and activity inputs and results, signal and
 * update arguments, queries, memos, failure details) with AES-256-GCM, so workflow history holds only
 * ciphertext. An encrypted payload keeps the key id in its metadata: new payloads use the first key,
 * and any listed key decrypts, so keys can rotate while workflows are running.
 */

export const ENCRYPTED_ENCODING = 'binary/encrypted';
const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface PayloadKey {
  id: string;
  /** 32 bytes. */
  key: Buffer;
}

export class PayloadCodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadCodecError';
  }
}

const { Payload: PayloadMessage } = proto.temporal.api.common.v1;

function text(bytes: Uint8Array | null | undefined): string | undefined {
  return bytes ? Buffer.from(bytes).toString('utf8') : undefined;
}

export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly keysById: Map<string, Buffer>;

  constructor(private readonly keys: readonly PayloadKey[]) {
    if (keys.length === 0) {
      throw new PayloadCodecError('The payload codec needs at least one key.');
    }
    this.keysById = new Map(keys.map(({ id, key }) => [id, key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const { id, key } = this.keys[0]!;
    return payloads.map((payload) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      // The key id is authenticated too, so a payload cannot be relabelled to another key.
      cipher.setAAD(Buffer.from(id, 'utf8'));
      const plaintext = PayloadMessage.encode(payload).finish();
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return {
        metadata: {
          encoding: Buffer.from(ENCRYPTED_ENCODING, 'utf8'),
          [KEY_ID_METADATA]: Buffer.from(id, 'utf8'),
        },
        data: Buffer.concat([iv, ciphertext, cipher.getAuthTag()]),
      };
    });
  }

  /** Decrypts encrypted payloads and passes others through, such as those in histories recorded before encryption. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (text(payload.metadata?.encoding) !== ENCRYPTED_ENCODING) {
        return payload;
      }
      const id = text(payload.metadata?.[KEY_ID_METADATA]);
      const key = id === undefined ? undefined : this.keysById.get(id);
      if (key === undefined) {
        throw new PayloadCodecError(`A payload was encrypted with key "${id ?? '(none)'}", which PAYLOAD_ENCRYPTION_KEYS does not list.`);
      }
      const data = Buffer.from(payload.data ?? []);
      if (data.length < IV_BYTES + TAG_BYTES) {
        throw new PayloadCodecError(`An encrypted payload of ${data.length} bytes is too short to be valid.`);
      }
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(id!, 'utf8'));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plaintext: Buffer;
      try {
        plaintext = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new PayloadCodecError(`An encrypted payload failed authentication with key "${id}".`);
      }
      return PayloadMessage.decode(plaintext);
    });
  }
}
