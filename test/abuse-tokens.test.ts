import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import supertest, { type Response } from 'supertest';

import { createApp } from '../api/app.js';
import { hashPassword } from '../lib/passwords.js';
import { hashToken } from '../lib/secrets.js';
import type { ReceivedMail } from './support/fake-sendgrid.js';
import { eventually, uniqueEmail, type Harness } from './support/harness.js';
import { startSsoHarness, type SsoHarness } from './support/sso-app.js';

/**
 * The four kinds of emailed link token: invitation, password reset, email change and the SSO
 * self-service setup link. Each is checked the same way: it works, and once it is used (or its
 * onboarding ended) or past its expiry it gets exactly the response of a token that never existed, on
 * both the API route and the page. Guessing is rate-limited on every token route and on sign-in.
 */

const PASSWORD = 'a member password for abuse tests';
const NEW_PASSWORD = 'another password for abuse tests';

let sso: SsoHarness;
let harness: Harness;

beforeAll(async () => {
  sso = await startSsoHarness({}, { env: { LOGIN_RATE_LIMIT_PER_EMAIL: '1000' } });
  harness = sso.harness;
});

afterAll(async () => {
  await sso?.close();
});

function bearer(token: string): string {
  return `Bearer ${token}`;
}

/** Returns the token of the last link to `path` mailed to `to`, waiting for the email. */
async function mailedToken(to: string, path: string): Promise<string> {
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(to).some((mail) => linkIn(mail, path) !== undefined));
  const mail = harness.sendgrid.deliveredTo(to).filter((item) => linkIn(item, path) !== undefined).at(-1)!;
  return decodeURIComponent(new URL(linkIn(mail, path)!).searchParams.get('token')!);
}

function linkIn(mail: ReceivedMail, path: string): string | undefined {
  const text = mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
  return new RegExp(`https?://\\S+${path.replace(/[/.]/g, '\\$&')}\\?token=[A-Za-z0-9_%-]+`).exec(text)?.[0];
}

async function memberWithPassword(roles = ['customer_viewer']): Promise<{ email: string; userId: string }> {
  const email = uniqueEmail('token-member');
  const { userId } = await harness.addMember(email, roles);
  await harness.db('users').where({ id: userId }).update({ password_hash: await hashPassword(PASSWORD) });
  return { email, userId };
}

async function login(email: string): Promise<string> {
  const response = await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD });
  expect(response.status).toBe(200);
  return response.body.token as string;
}

interface TokenKind {
  name: string;
  /** The table that stores the token's hash, for the expiry check. */
  table: string;
  /** Issues a fresh token through the API and returns it as the email carried it. */
  issue(): Promise<string>;
  /** Uses the token through its API route. */
  use(token: string): Promise<Response>;
  /** Ends the token's life the way a person would: by using it, or for the setup link, by the onboarding ending. */
  consume(token: string): Promise<void>;
  /** The page the emailed link opens. */
  page: string;
}

const kinds: TokenKind[] = [
  {
    name: 'invitation',
    table: 'invitations',
    page: '/invitations/accept',
    async issue() {
      const email = uniqueEmail('invitee');
      const invited = await harness.api
        .post(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
        .set('Authorization', bearer(harness.seed.adminKey))
        .send({ email, roles: ['customer_viewer'] });
      expect(invited.status).toBe(202);
      return mailedToken(email, '/invitations/accept');
    },
    use: (token) => harness.api.post('/v1/invitations/accept').send({ token, password: PASSWORD }),
    async consume(token) {
      expect((await this.use(token)).status).toBe(200);
    },
  },
  {
    name: 'password reset',
    table: 'password_resets',
    page: '/password-reset',
    async issue() {
      const { email } = await memberWithPassword();
      expect((await harness.api.post('/v1/auth/password-reset').send({ email })).status).toBe(202);
      return mailedToken(email, '/password-reset');
    },
    use: (token) => harness.api.post('/v1/auth/password-reset/confirm').send({ token, password: NEW_PASSWORD }),
    async consume(token) {
      expect((await this.use(token)).status).toBe(200);
    },
  },
  {
    name: 'email change',
    table: 'email_changes',
    page: '/email-changes/confirm',
    async issue() {
      const { email } = await memberWithPassword();
      const newEmail = uniqueEmail('new-address');
      const requested = await harness.api
        .post('/v1/me/email')
        .set('Authorization', bearer(await login(email)))
        .send({ newEmail, currentPassword: PASSWORD });
      expect(requested.status).toBe(202);
      return mailedToken(newEmail, '/email-changes/confirm');
    },
    use: (token) => harness.api.post('/v1/email-changes/confirm').send({ token }),
    async consume(token) {
      expect((await this.use(token)).status).toBe(200);
    },
  },
  {
    name: 'SSO setup link',
    table: 'sso_onboardings',
    page: '/sso/onboarding',
    async issue() {
      // One onboarding per account at a time, so each token gets an account of its own.
      const accountId = `sso-${randomBytes(4).toString('hex')}`;
      await harness.db('accounts').insert({ id: accountId, name: `Account ${accountId}` });
      const contactEmail = uniqueEmail('contact');
      const started = await harness.api
        .post(`/v1/accounts/${accountId}/sso/okta/onboarding`)
        .set('Authorization', bearer(sso.operatorKey))
        .send({ contactEmail });
      expect(started.status).toBe(202);
      return mailedToken(contactEmail, '/sso/onboarding');
    },
    use: (token) =>
      harness.api.post('/v1/sso/onboarding/credentials').send({ token, clientId: 'abuse-client', clientSecret: 'abuse-client-secret', issuer: 'http://127.0.0.1:9' }),
    async consume(token) {
      expect((await this.use(token)).status).toBe(200);
      const { account_id: accountId } = await harness.db('sso_onboardings').where({ token_hash: hashToken(token) }).first('account_id');
      const cancelled = await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/cancel`).set('Authorization', bearer(sso.operatorKey));
      expect(cancelled.status).toBe(200);
      await eventually(async () => ((await harness.db('sso_onboardings').where({ account_id: accountId, status: 'cancelled' }).first('id')) ? true : undefined));
    },
  },
];

function unknownToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Returns the status, type and body of a response; headers such as X-Request-Id differ on every call anyway. */
function observable(response: Response): { status: number; type: string; body: string } {
  return { status: response.status, type: response.type, body: response.text };
}

async function expectLikeUnknown(kind: TokenKind, token: string): Promise<void> {
  const unknown = unknownToken();
  const [used, never] = [await kind.use(token), await kind.use(unknown)];
  expect(used.status).toBeGreaterThanOrEqual(400);
  expect(observable(used)).toEqual(observable(never));

  const [usedPage, neverPage] = [await harness.api.get(kind.page).query({ token }), await harness.api.get(kind.page).query({ token: unknown })];
  expect(usedPage.status).toBe(410);
  expect(observable(usedPage)).toEqual(observable(neverPage));
}

describe.each(kinds)('$name token', (kind) => {
  test('works before use', async () => {
    const token = await kind.issue();
    const page = await harness.api.get(kind.page).query({ token });
    expect(page.status).toBe(200);
    // Opening the page changes nothing: the token still works afterwards.
    await kind.consume(token);
  });

  test('used token looks unknown', async () => {
    const token = await kind.issue();
    await kind.consume(token);
    await expectLikeUnknown(kind, token);
  });

  test('expired token looks unknown', async () => {
    const token = await kind.issue();
    // The lookup compares expires_at itself, so the token dies at that moment even before the
    // workflow's expiry timer fires.
    const updated = await harness.db(kind.table).where({ token_hash: hashToken(token) }).update({ expires_at: harness.db.raw("now() - interval '1 second'") });
    expect(updated).toBe(1);
    await expectLikeUnknown(kind, token);
  });

  test('stored only as SHA-256', async () => {
    const token = await kind.issue();
    const row = await harness.db(kind.table).where({ token_hash: hashToken(token) }).first();
    expect(row).toBeDefined();
    expect(JSON.stringify(row)).not.toContain(token);
  });
});

describe('guessing limits', () => {
  const LIMIT = 3;
  let limited: ReturnType<typeof supertest>;

  beforeEach(() => {
    // The same app with small limits, so a handful of requests reach them. Each app keeps its own counts,
    // and routes of one kind share a count (the invitation page and API, or all account links), so every
    // test gets a new app.
    const config = {
      ...harness.config,
      tokenRateLimitPerMinute: LIMIT,
      loginRateLimit: { ...harness.config.loginRateLimit, perEmail: LIMIT, perIp: LIMIT * 3 },
    };
    limited = supertest(createApp({ config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) }));
  });

  test.each([
    ['invitation acceptance', '/v1/invitations/accept', (token: string) => ({ token, password: PASSWORD })],
    ['password reset', '/v1/auth/password-reset/confirm', (token: string) => ({ token, password: NEW_PASSWORD })],
    ['email change', '/v1/email-changes/confirm', (token: string) => ({ token })],
    ['SSO setup', '/v1/sso/onboarding/credentials', (token: string) => ({ token, clientId: 'c', issuer: 'http://127.0.0.1:9' })],
  ])('%s guesses limited', async (_name, path, body) => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < LIMIT + 2; attempt += 1) {
      statuses.push((await limited.post(path).send(body(unknownToken()))).status);
    }
    expect(statuses.slice(0, LIMIT).every((status) => status === 410)).toBe(true);
    expect(statuses.slice(LIMIT)).toEqual([429, 429]);

    const blocked = await limited.post(path).send(body(unknownToken()));
    expect(blocked.headers['retry-after']).toMatch(/^\d+$/);
  });

  test('invitation page guesses limited', async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < LIMIT + 1; attempt += 1) {
      statuses.push((await limited.get('/invitations/accept').query({ token: unknownToken() })).status);
    }
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(410), 429]);
  });

  test('password guesses per email limited', async () => {
    const { email } = await memberWithPassword();
    const statuses: number[] = [];
    for (let attempt = 0; attempt < LIMIT; attempt += 1) {
      statuses.push((await limited.post('/v1/auth/login').send({ email, password: `wrong guess ${attempt}` })).status);
    }
    expect(statuses).toEqual(Array<number>(LIMIT).fill(401));

    // Once limited, even the right password gets 429, so guessing cannot continue.
    const right = await limited.post('/v1/auth/login').send({ email, password: PASSWORD });
    expect(right.status).toBe(429);
    expect(right.headers['retry-after']).toMatch(/^\d+$/);
    expect(right.body.token).toBeUndefined();
  });

  test('password guesses per address limited', async () => {
    const statuses: number[] = [];
    // The per-email limit is never reached: every attempt names another person.
    for (let attempt = 0; attempt < LIMIT * 3 + 1; attempt += 1) {
      statuses.push((await limited.post('/v1/auth/login').send({ email: uniqueEmail('guess'), password: 'a wrong guess' })).status);
    }
    expect(statuses).toEqual([...Array<number>(LIMIT * 3).fill(401), 429]);
  });
});

describe('token comparison', () => {
  const SOURCE_DIRS = ['api', 'api/routes', 'api/sso', 'lib', 'lib/sso', 'activities', 'db'];
  /** Columns that hold the SHA-256 of a secret; the secret itself is never stored. */
  const HASH_COLUMN = /\b(token_hash|secret_hash|state_hash)\b['"]?\s*[:,]\s*(\S[^,)}]*)/g;

  async function sourceFiles(): Promise<{ path: string; text: string }[]> {
    const root = fileURLToPath(new URL('../', import.meta.url));
    const files: { path: string; text: string }[] = [];
    for (const dir of SOURCE_DIRS) {
      for (const name of await readdir(`${root}${dir}`)) {
        if (name.endsWith('.ts')) {
          files.push({ path: `${dir}/${name}`, text: await readFile(`${root}${dir}/${name}`, 'utf8') });
        }
      }
    }
    return files;
  }

  test('lookups go through the hash', async () => {
    // A token is found by `WHERE token_hash = sha256(token)`: the database compares hashes of the
    // caller's input, so its timing reveals nothing about a stored token.
    const unhashed: string[] = [];
    for (const { path, text } of await sourceFiles()) {
      for (const match of text.matchAll(HASH_COLUMN)) {
        const value = match[2]!.trim();
        // hashToken(...), a hash from generate*(), null when a used token is cleared, a subquery over
        // the same column, or the model dropping the column from its JSON.
        const hashed = /^(hashToken\(|tokenHash\b|null\b|db\('sso_login_states'|_tokenHash\b)/.test(value);
        if (!hashed) {
          unhashed.push(`${path}: ${match[0]}`);
        }
      }
    }
    expect(unhashed).toEqual([]);
  });

  test('secrets compared in constant time', async () => {
    // The only secrets compared in process are CSRF signatures; they must use timingSafeEqual.
    const plainComparisons: string[] = [];
    for (const { path, text } of await sourceFiles()) {
      for (const line of text.split('\n')) {
        if (/\b\w*(token|secret|signature|hash)\w*\s*[!=]==?\s*\w*(token|secret|signature|hash)/i.test(line) && !/=== (null|undefined)|typeof /.test(line)) {
          plainComparisons.push(`${path}: ${line.trim()}`);
        }
      }
    }
    expect(plainComparisons).toEqual([]);

    const csrf = await readFile(fileURLToPath(new URL('../api/sso/csrf.ts', import.meta.url)), 'utf8');
    expect(csrf).toContain('constantTimeEqual(');
    const secrets = await readFile(fileURLToPath(new URL('../lib/secrets.ts', import.meta.url)), 'utf8');
    expect(secrets).toMatch(/a\.length === b\.length && timingSafeEqual\(a, b\)/);
  });
});
