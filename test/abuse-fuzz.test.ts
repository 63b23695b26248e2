import { randomBytes, randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { pino } from 'pino';
import type { Test } from 'supertest';
import type { z } from 'zod';

import { createApp } from '../api/app.js';
import { passwordChangeRequestSchema, emailChangeRequestSchema, emailChangeConfirmationSchema, passwordResetConfirmationSchema, passwordResetRequestSchema } from '../api/routes/account-settings.js';
import { batchRequestSchema, groupInviteRequestSchema } from '../api/routes/bulk.js';
import { emptyRequestSchema, roleChangeRequestSchema } from '../api/routes/member-changes.js';
import { operatorDeactivateRequestSchema } from '../api/routes/operator.js';
import { acceptRequestSchema, inviteRequestSchema } from '../api/schemas.js';
import { createSession } from '../api/sessions.js';
import { codecRequestSchema } from '../api/routes/codec.js';
import { eventually, type Harness } from './support/harness.js';
import { listRoutes } from './support/routes.js';
import { startSsoHarness, type SsoHarness } from './support/sso-app.js';

/**
 * Property-based input fuzzing of every POST and PUT route, with fast-check. Each route gets arbitrary
 * JSON values, raw text that is not JSON, and near-valid bodies: a valid body with one value replaced,
 * one key removed or one unknown key added. No response may be a 5xx, and a rejected request (4xx) must
 * leave the row count of every table and the number of workflows unchanged.
 */

/** Runs per route and kind of body: with three kinds and 25 routes the test sends about 1,700 requests in under a minute. */
const RUNS = 25;

let sso: SsoHarness;
let harness: Harness;
let routes: { method: string; path: string }[];
let adminSession: string;
let operatorKey: string;
let tables: string[];

beforeAll(async () => {
  // Password checks and sign-ins fail on purpose here; the limits must not turn them into 429s.
  sso = await startSsoHarness({}, { env: { LOGIN_RATE_LIMIT_PER_EMAIL: '100000', LOGIN_RATE_LIMIT_PER_IP: '100000' } });
  harness = sso.harness;
  operatorKey = sso.operatorKey;
  adminSession = (await createSession(harness.db, harness.config, harness.seed.adminUserId, { ip: undefined, userAgent: undefined })).token;
  routes = listRoutes(createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) })).filter(
    (route) => route.method === 'POST' || route.method === 'PUT',
  );
  tables = await harness.db('pg_tables').where({ schemaname: 'public' }).whereNot('tablename', 'like', 'knex_%').orderBy('tablename').pluck('tablename');
});

afterAll(async () => {
  await sso?.close();
});

type Credential = 'none' | 'adminKey' | 'adminSession' | 'freshSession' | 'operator';

interface Target {
  credential: Credential;
  /** A valid body for the route, from which near-valid ones are made; undefined for routes that take none. */
  valid?: unknown;
  /** The route's request schema, to check that `valid` is valid, where the route module exports it. */
  schema?: z.ZodType;
}

const linkToken = () => randomBytes(32).toString('base64url');
const codecBody = () => ({
  payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"text"').toString('base64') }],
});
const ENVIRONMENT = '/v1/accounts/:accountId/environments/:environment';

/** The user ids in paths are unknown, so that a body that passes validation still changes nothing. */
const TARGETS: Record<string, Target> = {
  'POST /v1/invitations/accept': { credential: 'none', valid: { token: linkToken(), password: 'a long enough password' }, schema: acceptRequestSchema },
  'POST /v1/me/password': {
    credential: 'adminSession',
    // The current password is wrong, so even an accepted shape changes nothing.
    valid: { currentPassword: 'not the current password', newPassword: 'a new long password' },
    schema: passwordChangeRequestSchema,
  },
  'POST /v1/me/email': {
    credential: 'adminSession',
    valid: { newEmail: 'new.address@example.com', currentPassword: 'not the current password' },
    schema: emailChangeRequestSchema,
  },
  'POST /v1/email-changes/confirm': { credential: 'none', valid: { token: linkToken() }, schema: emailChangeConfirmationSchema },
  'POST /v1/auth/password-reset': { credential: 'none', valid: { email: 'nobody.here@example.com' }, schema: passwordResetRequestSchema },
  'POST /v1/auth/password-reset/confirm': { credential: 'none', valid: { token: linkToken(), password: 'a long enough password' }, schema: passwordResetConfirmationSchema },
  'POST /v1/accounts/:accountId/sso/okta/onboarding': { credential: 'adminKey', valid: { contactEmail: 'contact@example.com' } },
  'PUT /v1/accounts/:accountId/sso/google': { credential: 'adminKey', valid: { allowedDomains: ['example.com'] } },
  'PUT /v1/accounts/:accountId/settings': { credential: 'adminKey', valid: { passwordLoginEnabled: true } },
  'POST /v1/operator/sso/onboardings/:accountId/approve': { credential: 'operator' },
  'POST /v1/operator/sso/onboardings/:accountId/cancel': { credential: 'operator' },
  'POST /v1/sso/onboarding/credentials': { credential: 'none', valid: { token: linkToken(), clientId: 'client', clientSecret: 'secret', issuer: 'http://127.0.0.1:9' } },
  'POST /v1/sso/onboarding/test': { credential: 'none', valid: { token: linkToken() } },
  'POST /v1/sso/onboarding/confirm': { credential: 'none', valid: { token: linkToken() } },
  'POST /v1/auth/login': { credential: 'none', valid: { email: 'nobody.here@example.com', password: 'not a password' } },
  'POST /v1/auth/logout': { credential: 'freshSession' },
  'POST /v1/operator/users/deactivate': { credential: 'operator', valid: { email: 'nobody.here@example.com', reason: 'fuzz' }, schema: operatorDeactivateRequestSchema },
  'POST /v1/accounts/:accountId/users': {
    credential: 'adminSession',
    valid: { email: 'group.invitee@example.com', environments: [{ environment: 'sandbox', roles: ['customer_viewer'] }] },
    schema: groupInviteRequestSchema,
  },
  [`POST ${ENVIRONMENT}/users:batch`]: { credential: 'adminKey', valid: { rows: [{ email: 'batch.invitee@example.com', roles: ['customer_viewer'] }] }, schema: batchRequestSchema },
  [`POST ${ENVIRONMENT}/users`]: { credential: 'adminKey', valid: { email: 'invitee@example.com', roles: ['customer_viewer'] }, schema: inviteRequestSchema },
  [`POST ${ENVIRONMENT}/users/:userId/invitation/resend`]: { credential: 'adminKey' },
  [`POST ${ENVIRONMENT}/users/:userId/invitation/revoke`]: { credential: 'adminKey' },
  [`PUT ${ENVIRONMENT}/users/:userId/roles`]: { credential: 'adminKey', valid: { roles: ['customer_viewer'] }, schema: roleChangeRequestSchema },
  [`POST ${ENVIRONMENT}/users/:userId/deactivate`]: { credential: 'adminKey', valid: {}, schema: emptyRequestSchema },
  [`POST ${ENVIRONMENT}/users/:userId/reactivate`]: { credential: 'adminKey', valid: {}, schema: emptyRequestSchema },
  'POST /codec/decode': { credential: 'operator', valid: codecBody(), schema: codecRequestSchema },
  'POST /codec/encode': { credential: 'operator', valid: codecBody(), schema: codecRequestSchema },
  'POST /codec/session': { credential: 'none', valid: { operatorKey: 'lo_000000000000_unknown' } },
};

async function authorization(credential: Credential): Promise<string | undefined> {
  switch (credential) {
    case 'none':
      return undefined;
    case 'adminKey':
      return harness.seed.adminKey;
    case 'adminSession':
      return adminSession;
    case 'freshSession':
      return (await createSession(harness.db, harness.config, harness.seed.adminUserId, { ip: undefined, userAgent: undefined })).token;
    case 'operator':
      return operatorKey;
  }
}

/** Row counts of every table, in one query. */
async function rowCounts(): Promise<Record<string, number>> {
  const row = await harness.db.first(tables.map((table) => harness.db.raw('(SELECT count(*)::int FROM ??) AS ??', [table, table])));
  return row as Record<string, number>;
}

async function workflowCount(): Promise<number> {
  return (await harness.temporal.workflow.count(`TaskQueue = '${harness.config.temporal.taskQueue}'`)).count;
}

/** Waits until the row counts stop changing, after an accepted request whose workflow writes in the background. */
async function settle(): Promise<void> {
  // A workflow started by the accepted request writes between activity hand-offs, which take longer than
  // a second on a loaded machine, so the counts must hold still for three checks in a row.
  let previous = JSON.stringify(await rowCounts());
  let stableChecks = 0;
  await eventually(async () => {
    await new Promise((resolve) => setTimeout(resolve, 400));
    const current = JSON.stringify(await rowCounts());
    stableChecks = current === previous ? stableChecks + 1 : 0;
    previous = current;
    return stableChecks >= 3 ? true : undefined;
  }, 30_000, 'row counts settling after an accepted request');
}

type Body = { kind: 'json'; value: unknown } | { kind: 'raw'; text: string };

/** Lists every path to a value inside `value`, as object keys and array indexes. */
function pathsIn(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(value)) {
    return value.flatMap((item, index) => [[...prefix, index], ...pathsIn(item, [...prefix, index])]);
  }
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([key, item]) => [[...prefix, key], ...pathsIn(item, [...prefix, key])]);
  }
  return [];
}

/** Returns a copy of `valid` with one change: a value replaced, a key removed, or an unknown key added. */
function nearValid(valid: unknown, choice: number, change: 'replace' | 'remove' | 'add', replacement: unknown, extraKey: string): unknown {
  const copy = structuredClone(valid) as Record<string | number, unknown>;
  const paths = pathsIn(copy);
  if (change === 'add' || paths.length === 0) {
    const objects = [[], ...paths].filter((path) => {
      const target = path.reduce<unknown>((node, key) => (node as Record<string | number, unknown>)[key], copy);
      return typeof target === 'object' && target !== null && !Array.isArray(target);
    });
    const path = objects[choice % objects.length]!;
    const target = path.reduce<unknown>((node, key) => (node as Record<string | number, unknown>)[key], copy) as Record<string, unknown>;
    target[`x-${extraKey}`] = replacement;
    return copy;
  }
  const path = paths[choice % paths.length]!;
  const parent = path.slice(0, -1).reduce<unknown>((node, key) => (node as Record<string | number, unknown>)[key], copy) as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (change === 'remove') {
    if (Array.isArray(parent)) {
      parent.splice(last as number, 1);
    } else {
      delete parent[last];
    }
  } else {
    parent[last] = replacement;
  }
  return copy;
}

function bodies(target: Target): fc.Arbitrary<Body>[] {
  const arbitraryJson = fc.jsonValue().map((value): Body => ({ kind: 'json', value }));
  const rawText = fc.string({ maxLength: 200 }).map((text): Body => ({ kind: 'raw', text }));
  if (target.valid === undefined) {
    return [arbitraryJson, rawText];
  }
  const near = fc
    .tuple(fc.nat(), fc.constantFrom('replace' as const, 'remove' as const, 'add' as const), fc.jsonValue(), fc.string({ minLength: 1, maxLength: 10 }))
    .map(([choice, change, replacement, key]): Body => ({ kind: 'json', value: nearValid(target.valid, choice, change, replacement, key) }));
  return [arbitraryJson, rawText, near];
}

function concretePath(path: string): string {
  return path.replace(':accountId', harness.seed.accountId).replace(':environment', 'sandbox').replace(':userId', randomUUID());
}

function send(method: string, path: string, credential: string | undefined, body: Body): Test {
  const url = concretePath(path);
  const request = method === 'PUT' ? harness.api.put(url) : harness.api.post(url);
  if (credential) {
    request.set('Authorization', `Bearer ${credential}`);
  }
  if (body.kind === 'raw') {
    return request.set('Content-Type', 'application/json').send(body.text);
  }
  return request.set('Content-Type', 'application/json').send(JSON.stringify(body.value));
}

describe('input fuzzing', () => {
  test('every body route has a target', () => {
    expect(routes.map((route) => `${route.method} ${route.path}`).sort()).toEqual(Object.keys(TARGETS).sort());
  });

  test.each(Object.entries(TARGETS).filter(([, target]) => target.schema !== undefined))('valid body of %s is valid', (_route, target) => {
    expect(target.schema!.safeParse(target.valid).error).toBeUndefined();
  });

  test('no 5xx and no writes on rejection', async () => {
    const failures: string[] = [];
    for (const { method, path } of routes) {
      const route = `${method} ${path}`;
      const target = TARGETS[route]!;
      const workflowsBefore = await workflowCount();
      let accepted = 0;

      for (const arbitrary of bodies(target)) {
        await fc.assert(
          fc.asyncProperty(arbitrary, async (body) => {
            // A fresh session is a row too, so it is made before the counts are taken.
            const credential = await authorization(target.credential);
            const before = await rowCounts();
            const response = await send(method, path, credential, body);
            const sent = body.kind === 'raw' ? body.text : JSON.stringify(body.value);
            expect(`${route} ${response.status} for ${sent.slice(0, 300)}: ${response.text.slice(0, 300)}`).not.toMatch(/^\S+ \S+ 5\d\d /);

            if (response.status < 400) {
              accepted += 1;
              await settle();
              return;
            }
            const after = await rowCounts();
            const changed = tables.filter((table) => before[table] !== after[table]).map((table) => `${table} ${before[table]} -> ${after[table]}`);
            expect(`${route} ${response.status} for ${sent.slice(0, 300)} changed: ${changed.join(', ')}`).toMatch(/changed: $/);
          }),
          { numRuns: RUNS, endOnFailure: true },
        ).catch((error: unknown) => {
          // fast-check's message has the seed, the counterexample and the failed expectation.
          const { message, cause } = error as Error;
          failures.push(`${route}:\n${message.split('\n').slice(0, 4).join('\n')}\n${(cause as Error | undefined)?.message ?? ''}`);
        });
      }

      if (accepted === 0) {
        // Visibility lags a moment behind a workflow start; a start would show within this wait.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const workflowsAfter = await workflowCount();
        if (workflowsAfter !== workflowsBefore) {
          failures.push(`${route}: ${workflowsAfter - workflowsBefore} workflows started by rejected requests`);
        }
      }
    }
    expect(failures).toEqual([]);
  }, 300_000);
});
