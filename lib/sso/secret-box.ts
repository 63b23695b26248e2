import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for client secrets at rest. The stored text is `v1.<iv>.<tag>.<ciphertext>` in base64url,
 * with the key id in its own column so keys can rotate: new secrets use the first configured key, and
 * any configured key decrypts. The associated data binds a ciphertext to its row, so a ciphertext copied
 * to another connection fails to decrypt.
 */

export interface EncryptionKey {
  id: string;
  key: Buffer;
}

export interface SealedSecret {
  keyId: string;
  ciphertext: string;
}

const IV_BYTES = 12;

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

export function sealSecret(keys: EncryptionKey[], plaintext: string, associatedData: string): SealedSecret {
  const current = keys[0];
  if (!current) {
    throw new SecretBoxError('No SSO encryption key is configured; set SSO_ENCRYPTION_KEYS.');
  }
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', current.key, iv);
  cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const encrypted = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const parts = [iv, cipher.getAuthTag(), encrypted].map((part) => part.toString('base64url'));
  return { keyId: current.id, ciphertext: `v1.${parts.join('.')}` };
}

export function openSecret(keys: EncryptionKey[], sealed: SealedSecret, associatedData: string): string {
  const key = keys.find((candidate) => candidate.id === sealed.keyId);
  if (!key) {
    throw new SecretBoxError(`The client secret was encrypted with key "${sealed.keyId}", which SSO_ENCRYPTION_KEYS no longer lists.`);
  }
  const [version, iv, tag, encrypted] = sealed.ciphertext.split('.');
  if (version !== 'v1' || !iv || !tag || encrypted === undefined) {
    throw new SecretBoxError('The stored client secret is not in the expected format.');
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(encrypted, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretBoxError(`The stored client secret failed authentication with key "${sealed.keyId}".`);
  }
}
