import type { Client } from '@temporalio/client';
import type { Knex } from 'knex';
import type { Logger } from 'pino';

import type { Config } from '../lib/config.js';

/** Dependencies of the HTTP layer. Tests build them with real connections. */
export interface ApiDependencies {
  config: Config;
  db: Knex;
  temporal: Client;
  logger: Logger;
  /** Set by api/main.ts on SIGTERM; without it the app never drains. */
  drain?: DrainState;
}

/** Whether the process is shutting down: /readyz then returns 503 so that load balancers stop sending requests. */
export interface DrainState {
  draining: boolean;
}

/** The API key owner's active membership in the key's environment, loaded together with the key. */
export interface KeyMembership {
  /** Name of the key's environment, such as "production". */
  environment: string;
  membershipId: string;
  roles: string[];
}

/** Sender of the request, resolved from the bearer credential or the session cookie. */
export type Caller =
  | { kind: 'apiKey'; apiKeyId: string; userId: string; accountId: string; environmentId: string; membership: KeyMembership }
  | { kind: 'session'; sessionId: string; userId: string }
  | { kind: 'operator'; operatorKeyId: string; name: string };

/** The caller as a member of the account environment in the request path. */
export interface Principal {
  caller: Caller;
  userId: string;
  accountId: string;
  environmentId: string;
  environment: string;
  membershipId: string;
  roles: string[];
}

declare module 'express-serve-static-core' {
  interface Request {
    caller?: Caller;
    principal?: Principal;
  }
}

/** Returns the owner of Idempotency-Key records: keys are per API key, or per person for sessions. */
export function idempotencyOwner(caller: Caller): string {
  switch (caller.kind) {
    case 'apiKey':
      return `api-key:${caller.apiKeyId}`;
    case 'session':
      return `user:${caller.userId}`;
    case 'operator':
      return `operator:${caller.operatorKeyId}`;
  }
}
