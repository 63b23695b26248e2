import { z } from 'zod';

/** RFC 5321 limits a forward path to 256 octets including the angle brackets, so 254 for the address. */
export const EMAIL_MAX_LENGTH = 254;

/**
 * An email address as a person typed it. Surrounding spaces are trimmed; nothing else is changed, and an
 * address that would need other changes (inner spaces, missing domain, over-long) is rejected.
 */
export const emailSchema = z
  .string()
  .trim()
  .max(EMAIL_MAX_LENGTH, `must be at most ${EMAIL_MAX_LENGTH} characters`)
  .pipe(z.email('must be a valid email address'));

/** Returns the form used to compare addresses: trimmed and lower-cased, as in the database's unique index. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
