import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { hashPassword } from '../lib/passwords.js';
import { generateOperatorKey } from '../lib/secrets.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

/**
 * A credential must stop working on the very next request after the event that ends it: no cache, no
 * grace period. Each test uses every credential once before the event, so a credential that was never
 * valid cannot make it pass, and once right after it. Sessions are tried as a bearer token and as the
 * session cookie that SSO sign-in sets.
 */

const PASSWORD = 'a credentials test password';
const NEW_PASSWORD = 'a changed credentials password';

let harness: Harness;
let operatorKey: string;

beforeAll(async () => {
  harness = await startHarness({ env: { LOGIN_RATE_LIMIT_PER_EMAIL: '1000' } });
  const operator = generateOperatorKey();
  await harness.db('operator_api_keys').insert({ name: 'credentials tests', prefix: operator.prefix, secret_hash: operator.secretHash });
  operatorKey = operator.key;
});

afterAll(async () => {
  await harness?.close();
});

interface Person {
  email: string;
  userId: string;
  key: string;
  /** Two sessions of the same person: the one that makes a change, and another one. */
  session: string;
  otherSession: string;
}

async function signedInMember(roles = ['user_administrator']): Promise<Person> {
  const email = uniqueEmail('credentials');
  const { userId, key } = await harness.addMember(email, roles);
  await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
  const login = async () => (await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD }).expect(200)).body.token as string;
  return { email, userId, key, session: await login(), otherSession: await login() };
}

const usersPath = () => `/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`;

/** Statuses of one environment route and of /v1/me for a credential, by bearer header and by cookie. */
async function statuses(credential: string): Promise<{ users: number; me: number; usersByCookie?: number }> {
  const users = (await harness.api.get(usersPath()).set('Authorization', `Bearer ${credential}`)).status;
  const me = (await harness.api.get('/v1/me').set('Authorization', `Bearer ${credential}`)).status;
  if (!credential.startsWith('ls_')) {
    return { users, me };
  }
  const usersByCookie = (await harness.api.get(usersPath()).set('Cookie', `lc_session=${credential}`)).status;
  return { users, me, usersByCookie };
}

describe('credentials end', () => {
  test('deactivation ends key and sessions here', async () => {
    const person = await signedInMember();
    expect(await statuses(person.key)).toEqual({ users: 200, me: 200 });
    expect(await statuses(person.session)).toEqual({ users: 200, me: 200, usersByCookie: 200 });

    const deactivated = await harness.api.post(`${usersPath()}/${person.userId}/deactivate`).set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(deactivated.status).toBe(200);

    expect(await statuses(person.key)).toEqual({ users: 401, me: 401 });
    // The session still names the person, who may be a member elsewhere; only this environment ends.
    expect(await statuses(person.session)).toEqual({ users: 401, me: 200, usersByCookie: 401 });
    const revoked = await harness.db('api_keys').where({ user_id: person.userId }).whereNull('revoked_at').count({ count: '*' });
    expect(Number(revoked[0]!.count)).toBe(0);
  });

  test('operator deactivation ends every session', async () => {
    const person = await signedInMember();
    expect(await statuses(person.session)).toEqual({ users: 200, me: 200, usersByCookie: 200 });

    const response = await harness.api.post('/v1/operator/users/deactivate').set('Authorization', `Bearer ${operatorKey}`).send({ email: person.email });
    expect(response.status).toBe(200);

    expect(await statuses(person.key)).toEqual({ users: 401, me: 401 });
    expect(await statuses(person.session)).toEqual({ users: 401, me: 401, usersByCookie: 401 });
    expect(await statuses(person.otherSession)).toEqual({ users: 401, me: 401, usersByCookie: 401 });
  });

  test('password change ends other sessions', async () => {
    const person = await signedInMember();
    expect(await statuses(person.otherSession)).toEqual({ users: 200, me: 200, usersByCookie: 200 });

    const changed = await harness.api
      .post('/v1/me/password')
      .set('Authorization', `Bearer ${person.session}`)
      .send({ currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    expect(changed.status).toBe(200);

    expect(await statuses(person.otherSession)).toEqual({ users: 401, me: 401, usersByCookie: 401 });
    // The session that made the change goes on. API keys belong to the membership, not to the password,
    // so they keep working; deactivation or revocation ends them.
    expect(await statuses(person.session)).toEqual({ users: 200, me: 200, usersByCookie: 200 });
    expect(await statuses(person.key)).toEqual({ users: 200, me: 200 });
    const oldPassword = await harness.api.post('/v1/auth/login').send({ email: person.email, password: PASSWORD });
    expect(oldPassword.status).toBe(401);
  });

  test('password reset ends every session', async () => {
    const person = await signedInMember();
    expect((await harness.api.post('/v1/auth/password-reset').send({ email: person.email })).status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(person.email).length === 1);
    const text = harness.sendgrid.deliveredTo(person.email)[0]!.body.content.find((part) => part.type === 'text/plain')!.value;
    const token = decodeURIComponent(/password-reset\?token=([A-Za-z0-9_%-]+)/.exec(text)![1]!);

    const reset = await harness.api.post('/v1/auth/password-reset/confirm').send({ token, password: NEW_PASSWORD });
    expect(reset.status).toBe(200);

    expect(await statuses(person.session)).toEqual({ users: 401, me: 401, usersByCookie: 401 });
    expect(await statuses(person.otherSession)).toEqual({ users: 401, me: 401, usersByCookie: 401 });
  });

  test('logout ends the session', async () => {
    const person = await signedInMember();
    expect((await harness.api.post('/v1/auth/logout').set('Authorization', `Bearer ${person.session}`)).status).toBe(204);

    expect(await statuses(person.session)).toEqual({ users: 401, me: 401, usersByCookie: 401 });
    expect(await statuses(person.otherSession)).toEqual({ users: 200, me: 200, usersByCookie: 200 });
  });
});
