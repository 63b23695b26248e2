import { createHmac } from 'node:crypto';

import { constantTimeEqual } from '../../lib/secrets.js';

/**
 * CSRF tokens for the SSO forms: `<expiry>.<HMAC(key, purpose, binding, expiry)>`. The binding is the
 * SHA-256 of the self-service link's token, so a form token works only with the page it was rendered
 * for and only for its purpose (credentials, test, confirm). It needs no cookie and no server state.
 * A library was not used: csurf is deprecated, and the double-submit libraries for Express bind to a
 * session cookie that these token-addressed pages do not have.
 */

const LIFETIME_SECONDS = 2 * 60 * 60;

function sign(key: Buffer, purpose: string, binding: string, expiry: number): string {
  return createHmac('sha256', key).update(`${purpose}\n${binding}\n${expiry}`).digest('base64url');
}

export function issueCsrfToken(key: Buffer, purpose: string, binding: string, now = Date.now()): string {
  const expiry = Math.floor(now / 1000) + LIFETIME_SECONDS;
  return `${expiry}.${sign(key, purpose, binding, expiry)}`;
}

export function verifyCsrfToken(key: Buffer, purpose: string, binding: string, token: unknown, now = Date.now()): boolean {
  if (typeof token !== 'string' || token.length > 200) {
    return false;
  }
  const [expiryText, signature] = token.split('.');
  const expiry = Number(expiryText);
  if (!Number.isSafeInteger(expiry) || !signature || expiry < Math.floor(now / 1000)) {
    return false;
  }
  return constantTimeEqual(signature, sign(key, purpose, binding, expiry));
}
