import { describe, expect, test } from '@jest/globals';

import { hashPassword, passwordHashLimit, verifyPassword } from '../lib/passwords.js';

describe('password hashing concurrency', () => {
  test('a burst of hashes waits for the limit', async () => {
    const passwords = Array.from({ length: passwordHashLimit.concurrency + 4 }, (_, index) => `burst password number ${index}`);

    const hashing = passwords.map((password) => hashPassword(password));

    expect(passwordHashLimit.activeCount).toBe(passwordHashLimit.concurrency);
    expect(passwordHashLimit.pendingCount).toBe(4);
    const hashes = await Promise.all(hashing);
    expect(passwordHashLimit.activeCount).toBe(0);
    expect(hashes.every((hash) => hash.startsWith('$argon2id$v=19$m=19456,t=2,p=1$'))).toBe(true);
  });

  test('verifications share the limit with hashes', async () => {
    const hash = await hashPassword('shared limit password');

    const checks = [verifyPassword(hash, 'shared limit password'), verifyPassword(hash, 'another password here'), hashPassword('one more password')];

    expect(passwordHashLimit.activeCount + passwordHashLimit.pendingCount).toBe(3);
    expect(passwordHashLimit.activeCount).toBeLessThanOrEqual(passwordHashLimit.concurrency);
    const [right, wrong] = await Promise.all(checks);
    expect(right).toBe(true);
    expect(wrong).toBe(false);
  });
});
