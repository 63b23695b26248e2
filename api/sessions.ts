import type { Knex } from 'knex';

import type { Config } from '../lib/config.js';
import { generateSessionToken } from '../lib/secrets.js';

export interface NewSession {
  id: string;
  token: string;
  expiresAt: Date;
}

/** Starts a session for a person. The token is returned once; the database keeps only its hash. */
export async function createSession(
  db: Knex,
  config: Config,
  userId: string,
  client: { ip: string | undefined; userAgent: string | undefined },
): Promise<NewSession> {
  const { token, tokenHash } = generateSessionToken();
  const expiresAt = new Date(Date.now() + config.session.absoluteTimeoutMs);
  const [row] = await db('sessions')
    .insert({
      user_id: userId,
      token_hash: tokenHash,
      expires_at: expiresAt,
      ip: client.ip ?? null,
      user_agent: client.userAgent?.slice(0, 500) ?? null,
    })
    .returning('id');
  return { id: row.id, token, expiresAt };
}

/** Ends a person's sessions, all of them or all but one, and returns how many were still open. */
export async function revokeSessions(
  db: Knex | Knex.Transaction,
  userId: string,
  reason: string,
  options: { exceptSessionId?: string } = {},
): Promise<number> {
  const query = db('sessions').where({ user_id: userId }).whereNull('revoked_at').where('expires_at', '>', db.fn.now());
  if (options.exceptSessionId) {
    query.whereNot({ id: options.exceptSessionId });
  }
  return query.update({ revoked_at: db.fn.now(), revoked_reason: reason });
}
