import { availableParallelism } from 'node:os';

import { hash, verify, type Algorithm } from '@node-rs/argon2';
import pLimit from 'p-limit';

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 128;

// Algorithm is a const enum, which isolated modules cannot read; 2 is its Argon2id member.
const ARGON2ID = 2 as Algorithm;

/** argon2id with the OWASP Password Storage Cheat Sheet's first option: 19 MiB, 2 passes, 1 lane. */
const ARGON2_OPTIONS = { algorithm: ARGON2ID, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/**
 * Bounds the argon2id hashes and verifications that run at once. Each one keeps a libuv thread busy
 * on a CPU for its whole run, so a burst of sign-ins would otherwise take every CPU from the event
 * loop and Postgres. Half the CPUs, and at least one, run hashes; the rest of the burst waits in line.
 */
export const passwordHashLimit = pLimit(Math.max(1, Math.floor(availableParallelism() / 2)));

export function hashPassword(password: string): Promise<string> {
  return passwordHashLimit(() => hash(password, ARGON2_OPTIONS));
}

export function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return passwordHashLimit(() => verify(passwordHash, password));
}

/** Returns the rule a password breaks, or undefined when it is acceptable. */
export function passwordProblem(password: string, email: string): string | undefined {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH) {
    return `must be at least ${PASSWORD_MIN_LENGTH} characters`;
  }
  if (length > PASSWORD_MAX_LENGTH) {
    return `must be at most ${PASSWORD_MAX_LENGTH} characters`;
  }
  if (password.trim().toLowerCase() === email.trim().toLowerCase()) {
    return 'must not be the email address';
  }
  return undefined;
}
