import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import type { Response } from 'supertest';

import { createApp } from '../api/app.js';
import { createSession } from '../api/sessions.js';
import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { generateOperatorKey } from '../lib/secrets.js';
import { eventually, startHarness, uniqueEmail, uniqueId, type Harness } from './support/harness.js';
import { listRoutes } from './support/routes.js';

/**
 * Every route of the app against every kind of caller. A route missing from ACCESS fails the test, so a
 * new route needs a decision on who may call it. "Denied" means 401 or 403, with none of the first
 * account's member ids or email addresses in the body. "Allowed" means the request passed
 * authorization: any status but 401, 403 and 5xx. The ids in the paths are unknown, so most allowed
 * calls end in 400 or 404 and change nothing.
 */

type Role =
  | 'anonymous'
  | 'member'
  | 'memberSession'
  | 'userAdministrator'
  | 'administrator'
  | 'administratorSession'
  | 'otherAccountAdministrator'
  | 'otherAccountAdministratorSession'
  | 'operator'
  | 'deactivatedMember'
  | 'deactivatedMemberSession';

const ROLES: Role[] = [
  'anonymous',
  'member',
  'memberSession',
  'userAdministrator',
  'administrator',
  'administratorSession',
  'otherAccountAdministrator',
  'otherAccountAdministratorSession',
  'operator',
  'deactivatedMember',
  'deactivatedMemberSession',
];

/** Who may call a route. */
type Access =
  /** Anyone; the route checks a token in the request, or nothing. */
  | 'public'
  /** A session token of a person, whatever their memberships. */
  | 'session'
  /** A session token or an API key of a person. */
  | 'person'
  /** Administrators and user administrators who are active members of the environment in the path. */
  | 'environmentUserManager'
  /** Active administrators of the account in the path, and operator keys. */
  | 'accountAdministratorOrOperator'
  /** Operator keys only. */
  | 'operator';

const ALLOWED: Record<Access, Role[]> = {
  public: ROLES,
  session: ['memberSession', 'administratorSession', 'otherAccountAdministratorSession', 'deactivatedMemberSession'],
  person: ['member', 'memberSession', 'userAdministrator', 'administrator', 'administratorSession', 'otherAccountAdministrator', 'otherAccountAdministratorSession', 'deactivatedMemberSession'],
  environmentUserManager: ['userAdministrator', 'administrator', 'administratorSession'],
  accountAdministratorOrOperator: ['administrator', 'administratorSession', 'operator'],
  operator: ['operator'],
};

const ENVIRONMENT = '/v1/accounts/:accountId/environments/:environment';

/** Every route of the app and who may call it. */
const ACCESS: Record<string, Access> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /v1/openapi.json': 'public',
  'GET /openapi.json': 'public',
  'GET /docs': 'public',
  'GET /docs/swagger-initializer.js': 'public',
  'GET /metrics': 'public',
  'GET /codec/session': 'public',
  'POST /codec/session': 'public',
  'OPTIONS /codec/decode': 'public',
  'OPTIONS /codec/encode': 'public',
  'POST /codec/decode': 'operator',
  'POST /codec/encode': 'operator',
  'GET /v1/roles': 'public',
  'GET /invitations/accept': 'public',
  'POST /v1/invitations/accept': 'public',
  'GET /email-changes/confirm': 'public',
  'POST /v1/email-changes/confirm': 'public',
  'POST /v1/auth/password-reset': 'public',
  'GET /password-reset': 'public',
  'POST /v1/auth/password-reset/confirm': 'public',
  'GET /sso/onboarding': 'public',
  'POST /v1/sso/onboarding/credentials': 'public',
  'POST /v1/sso/onboarding/test': 'public',
  'POST /v1/sso/onboarding/confirm': 'public',
  'GET /login': 'public',
  'GET /v1/auth/sso/start': 'public',
  'GET /v1/auth/sso/callback': 'public',
  'POST /v1/auth/login': 'public',
  'POST /v1/me/password': 'session',
  'POST /v1/me/email': 'session',
  'POST /v1/auth/logout': 'session',
  'GET /v1/me': 'person',
  'POST /v1/accounts/:accountId/sso/okta/onboarding': 'accountAdministratorOrOperator',
  'GET /v1/accounts/:accountId/sso/okta/onboarding': 'accountAdministratorOrOperator',
  'GET /v1/accounts/:accountId/sso/connections': 'accountAdministratorOrOperator',
  'PUT /v1/accounts/:accountId/sso/google': 'accountAdministratorOrOperator',
  'PUT /v1/accounts/:accountId/settings': 'accountAdministratorOrOperator',
  'POST /v1/operator/sso/onboardings/:accountId/approve': 'operator',
  'POST /v1/operator/sso/onboardings/:accountId/cancel': 'operator',
  'POST /v1/operator/users/deactivate': 'operator',
  'POST /v1/accounts/:accountId/users': 'environmentUserManager',
  [`POST ${ENVIRONMENT}/users:batch`]: 'environmentUserManager',
  [`GET ${ENVIRONMENT}/batches/:batchId`]: 'environmentUserManager',
  [`POST ${ENVIRONMENT}/users`]: 'environmentUserManager',
  [`GET ${ENVIRONMENT}/users`]: 'environmentUserManager',
  [`GET ${ENVIRONMENT}/users/:userId`]: 'environmentUserManager',
  [`POST ${ENVIRONMENT}/users/:userId/invitation/resend`]: 'environmentUserManager',
  [`POST ${ENVIRONMENT}/users/:userId/invitation/revoke`]: 'environmentUserManager',
  [`PUT ${ENVIRONMENT}/users/:userId/roles`]: 'environmentUserManager',
  [`GET ${ENVIRONMENT}/users/:userId/deactivation-preview`]: 'environmentUserManager',
  [`POST ${ENVIRONMENT}/users/:userId/deactivate`]: 'environmentUserManager',
  [`POST ${ENVIRONMENT}/users/:userId/reactivate`]: 'environmentUserManager',
  [`GET ${ENVIRONMENT}/audit-events`]: 'environmentUserManager',
};

/**
 * Bodies for routes that validate the body before they authorize the caller, so that the check under
 * test is the authorization and not the validation. Every other route gets an empty JSON object.
 */
const BODIES: Record<string, () => object> = {
  'POST /v1/accounts/:accountId/users': () => ({
    email: uniqueEmail('group-invite'),
    environments: [{ environment: 'sandbox', roles: ['customer_viewer'] }],
  }),
};

let harness: Harness;
let routes: { method: string; path: string }[];
let operatorKey: string;
const userIds = {} as Record<'member' | 'otherAccountAdministrator' | 'deactivatedMember', string>;
const keys = {} as Record<'member' | 'userAdministrator' | 'otherAccountAdministrator' | 'deactivatedMember', string>;
/** Ids and email addresses of the first account's members, which no denied response may contain. */
const accountData: string[] = [];
let otherAccountId: string;

beforeAll(async () => {
  // Sign-in limits high enough that the public sign-in routes respond to every role without 429.
  harness = await startHarness({ env: { LOGIN_RATE_LIMIT_PER_EMAIL: '1000' } });
  // A second app on the same dependencies, because the harness keeps its own inside supertest.
  routes = listRoutes(createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) }));

  const memberEmail = uniqueEmail('viewer');
  const member = await harness.addMember(memberEmail, ['customer_viewer']);
  const userAdministratorEmail = uniqueEmail('user-admin');
  const userAdministrator = await harness.addMember(userAdministratorEmail, ['user_administrator']);
  const deactivatedEmail = uniqueEmail('deactivated');
  const deactivated = await harness.addMember(deactivatedEmail, ['customer_viewer']);
  Object.assign(userIds, { member: member.userId, deactivatedMember: deactivated.userId });
  Object.assign(keys, { member: member.key, userAdministrator: userAdministrator.key, deactivatedMember: deactivated.key });
  const adminEmail = (await harness.db('users').where({ id: harness.seed.adminUserId }).first('email')).email as string;
  accountData.push(memberEmail, userAdministratorEmail, deactivatedEmail, adminEmail, member.userId, userAdministrator.userId, deactivated.userId, harness.seed.adminUserId);

  otherAccountId = uniqueId('other');
  await createAccount(harness.db, { id: otherAccountId, name: `Account ${otherAccountId}`, environments: ['sandbox'] });
  const otherEnvironmentId = (await findEnvironment(harness.db, otherAccountId, 'sandbox'))!.id;
  const otherAdministrator = await ensureActiveMember(harness.db, {
    accountId: otherAccountId,
    environmentId: otherEnvironmentId,
    email: uniqueEmail('other-admin'),
    roles: ['administrator'],
  });
  userIds.otherAccountAdministrator = otherAdministrator.userId;
  keys.otherAccountAdministrator = (await createApiKey(harness.db, { userId: otherAdministrator.userId, accountId: otherAccountId, environmentId: otherEnvironmentId, name: 'other' })).key;

  const operator = generateOperatorKey();
  await harness.db('operator_api_keys').insert({ name: 'authorization table', prefix: operator.prefix, secret_hash: operator.secretHash });
  operatorKey = operator.key;

  // Deactivated through the API, as an administrator would, so that the workflow revokes the key.
  const deactivation = await harness.api
    .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users/${deactivated.userId}/deactivate`)
    .set('Authorization', `Bearer ${harness.seed.adminKey}`);
  expect(deactivation.status).toBe(200);
  await eventually(async () => ((await harness.db('api_keys').where({ user_id: deactivated.userId }).whereNull('revoked_at').first('id')) ? undefined : true));
});

afterAll(async () => {
  await harness?.close();
});

/** Returns the Authorization header value for a role, with a fresh session for session roles so that logout ends only its own. */
async function authorization(role: Role): Promise<string | undefined> {
  const session = async (userId: string) => `Bearer ${(await createSession(harness.db, harness.config, userId, { ip: undefined, userAgent: undefined })).token}`;
  switch (role) {
    case 'anonymous':
      return undefined;
    case 'member':
    case 'userAdministrator':
    case 'otherAccountAdministrator':
    case 'deactivatedMember':
      return `Bearer ${keys[role]}`;
    case 'administrator':
      return `Bearer ${harness.seed.adminKey}`;
    case 'operator':
      return `Bearer ${operatorKey}`;
    case 'memberSession':
      return session(userIds.member);
    case 'administratorSession':
      return session(harness.seed.adminUserId);
    case 'otherAccountAdministratorSession':
      return session(userIds.otherAccountAdministrator);
    case 'deactivatedMemberSession':
      return session(userIds.deactivatedMember);
  }
}

/** Fills the path parameters: the first account, its sandbox, a real member for reads and unknown ids for writes. */
function concretePath(method: string, path: string): string {
  return path
    .replace(':accountId', harness.seed.accountId)
    .replace(':environment', 'sandbox')
    .replace(':userId', method === 'GET' ? userIds.member : randomUUID())
    .replace(':batchId', randomUUID());
}

async function send(method: string, path: string, role: Role): Promise<Response> {
  const url = concretePath(method, path);
  const request = harness.api[method.toLowerCase() as 'get' | 'put' | 'post' | 'options'](url);
  const header = await authorization(role);
  if (header) {
    request.set('Authorization', header);
  }
  return method === 'GET' || method === 'OPTIONS' ? request : request.send(BODIES[`${method} ${path}`]?.() ?? {});
}

describe('authorization table', () => {
  test('every route has an entry', () => {
    const listed = routes.map((route) => `${route.method} ${route.path}`).sort();
    expect(listed).toEqual(Object.keys(ACCESS).sort());
  });

  test('every route and role', async () => {
    const failures: string[] = [];
    for (const { method, path } of routes) {
      const access = ACCESS[`${method} ${path}`]!;
      for (const role of ROLES) {
        const response = await send(method, path, role);
        const cell = `${method} ${path} as ${role}: ${response.status} ${response.text.slice(0, 200)}`;
        if (response.status >= 500) {
          failures.push(`server error: ${cell}`);
        } else if (ALLOWED[access].includes(role)) {
          if (response.status === 401 || response.status === 403) {
            failures.push(`expected allowed: ${cell}`);
          }
        } else if (response.status !== 401 && response.status !== 403) {
          failures.push(`expected 401 or 403: ${cell}`);
        } else if (accountData.some((value) => response.text.includes(value))) {
          failures.push(`denied response contains the account's data: ${cell}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  test('allowed reads return the member', async () => {
    // Guards the table against passing because every call failed for another reason.
    const member = await send('GET', `${ENVIRONMENT}/users/:userId`, 'userAdministrator');
    expect(member.status).toBe(200);
    expect(member.body.id).toBe(userIds.member);

    const other = await send('GET', `${ENVIRONMENT}/users/:userId`, 'otherAccountAdministrator');
    expect(other.status).toBe(403);
    expect(other.text).not.toContain(userIds.member);
  });

  test('other account key on its own account', async () => {
    const response = await harness.api
      .get(`/v1/accounts/${otherAccountId}/environments/sandbox/users`)
      .set('Authorization', `Bearer ${keys.otherAccountAdministrator}`);
    expect(response.status).toBe(200);
    expect(response.text).not.toContain(harness.seed.accountId);
    expect(accountData.filter((value) => response.text.includes(value))).toEqual([]);
  });
});
