import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/** Bytes of randomness in every token handed to a person: 256 bits. */
const TOKEN_BYTES = 32;

/** Derives a purpose-bound key from APP_SECRET, so one leaked key does not expose the others. */
export function deriveKey(appSecret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', appSecret, Buffer.alloc(0), `lifecycle:${purpose}`, 32));
}

/** SHA-256 of a high-entropy token, as stored in the database; such tokens need no slow hash. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function randomToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

export function randomSalt(): Buffer {
  return randomBytes(TOKEN_BYTES);
}

/**
 * Derives the token of one emailed link (an invitation, an email change, a password reset) from the
 * record's id, a random salt stored in the database and a key kept only in configuration. A retried
 * email activity derives the same link again instead of mailing a second, different one, and the
 * database alone, with the salt and the SHA-256 hash, does not reveal the token.
 */
export function deriveLinkToken(tokenKey: Buffer, recordId: string, salt: Buffer): string {
  return createHmac('sha256', tokenKey).update(recordId).update(salt).digest('base64url');
}

/** Generates a session token: `ls_` and 256 random bits. The database keeps only its SHA-256 hash. */
export function generateSessionToken(): { token: string; tokenHash: string } {
  const token = `ls_${randomToken()}`;
  return { token, tokenHash: hashToken(token) };
}

const SESSION_TOKEN_PATTERN = /^ls_[A-Za-z0-9_-]{43}$/;

export function isSessionToken(token: string): boolean {
  return SESSION_TOKEN_PATTERN.test(token);
}

/** Generates an operator API key, `lo_<prefix>_<secret>`, for platform support rather than for an account. */
export function generateOperatorKey(): { key: string; prefix: string; secretHash: string } {
  const prefix = randomBytes(6).toString('hex');
  const key = `lo_${prefix}_${randomToken()}`;
  return { key, prefix, secretHash: hashToken(key) };
}

const OPERATOR_KEY_PATTERN = /^lo_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$/;

export function isOperatorKey(key: string): boolean {
  return OPERATOR_KEY_PATTERN.test(key);
}

/** Keyed hash of a normalized email for workflow ids, which every operator can read. */
export function emailFingerprint(idKey: Buffer, normalizedEmail: string): string {
  return createHmac('sha256', idKey).update(normalizedEmail).digest('hex').slice(0, 24);
}

export function constantTimeEqual(left: string, right: string): boolean {
  const a = Buffer.from(left);
  const b = Buffer.from(right);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Generates an API key, `lc_<prefix>_<secret>`, where the prefix identifies the key in lists and logs. */
export function generateApiKey(): { key: string; prefix: string; secretHash: string } {
  const prefix = randomBytes(6).toString('hex');
  const secret = randomToken();
  const key = `lc_${prefix}_${secret}`;
  return { key, prefix, secretHash: hashToken(key) };
}

const API_KEY_PATTERN = /^lc_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$/;

export function parseApiKey(key: string): { prefix: string } | undefined {
  const match = API_KEY_PATTERN.exec(key);
  return match ? { prefix: match[1]! } : undefined;
}
