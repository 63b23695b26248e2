import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { openSecret, sealSecret, SecretBoxError } from '../lib/sso/secret-box.js';
import { assertOutboundUrl, OutboundUrlError } from '../lib/sso/outbound.js';
import { loadSsoConfig } from '../lib/sso-config.js';
import { uniqueEmail } from './support/harness.js';
import { Browser, CraftingOpenIdProvider, LocalOpenIdProvider, type CraftedToken } from './support/oidc-provider.js';
import { addAccountMember, createTestAccount, freePort, insertActiveOktaConnection, startSsoHarness, type SsoHarness } from './support/sso-app.js';

const CLIENT = { clientId: 'crafted-client', clientSecret: 'crafted-client-secret-0123456789' };
const GOOGLE = { clientId: 'google-client', clientSecret: 'google-client-secret-0123456789' };

let sso: SsoHarness;
let crafting: CraftingOpenIdProvider;
let google: LocalOpenIdProvider;
let accountId: string;
let environmentId: string;
let connectionId: string;

beforeAll(async () => {
  const port = await freePort();
  crafting = new CraftingOpenIdProvider(CLIENT);
  await crafting.start();
  // A second local provider replaces Google; the app finds it through SSO_GOOGLE_ISSUER.
  google = new LocalOpenIdProvider([{ ...GOOGLE, redirectUris: [`http://127.0.0.1:${port}/v1/auth/sso/callback`] }]);
  await google.start();
  sso = await startSsoHarness(
    { SSO_GOOGLE_ISSUER: google.issuer, SSO_GOOGLE_CLIENT_ID: GOOGLE.clientId, SSO_GOOGLE_CLIENT_SECRET: GOOGLE.clientSecret, SSO_CLOCK_TOLERANCE: '30s' },
    { port },
  );
  ({ accountId, environmentId } = await createTestAccount(sso.harness));
  connectionId = await insertActiveOktaConnection(sso.harness, accountId, { issuer: crafting.issuer, ...CLIENT });
});

afterAll(async () => {
  await sso?.close();
  await crafting?.stop();
  await google?.stop();
});

/** Starts a sign-in and returns the browser, with its state cookie, and the provider's state and nonce. */
async function startSignIn(email: string) {
  const browser = new Browser();
  const response = await browser.request(`${sso.baseUrl}/v1/auth/sso/start?email=${encodeURIComponent(email)}&connection=${connectionId}`);
  expect(response.status).toBe(303);
  const authorization = new URL(response.headers.get('location')!);
  expect(authorization.origin).toBe(crafting.issuer);
  expect(authorization.searchParams.get('code_challenge_method')).toBe('S256');
  return { browser, state: authorization.searchParams.get('state')!, nonce: authorization.searchParams.get('nonce')! };
}

async function callback(browser: Browser, parameters: Record<string, string>) {
  const response = await browser.request(`${sso.baseUrl}/v1/auth/sso/callback?${new URLSearchParams(parameters)}`);
  const text = await response.text();
  // Only the page's message, so that a failed expectation shows the reason and not the whole page.
  const escaped = /<p id="message">([^<]*)<\/p>/.exec(text)?.[1] ?? text;
  const message = escaped.replace(/&#(\d+);/g, (_all, code: string) => String.fromCharCode(Number(code)));
  return { status: response.status, text: message, session: browser.cookie(sso.baseUrl, 'lc_session') };
}

async function signInWith(email: string, crafted: CraftedToken, tokenEmail = email) {
  const { browser, state, nonce } = await startSignIn(email);
  const code = crafting.issueCode({ nonce, email: tokenEmail, crafted });
  return callback(browser, { code, state });
}

describe('sso sign-in checks', () => {
  let member: string;

  beforeAll(async () => {
    member = uniqueEmail('member');
    await addAccountMember(sso.harness, accountId, environmentId, member);
  });

  test('valid token signs in', async () => {
    const result = await signInWith(member, {});
    expect(result.text).toContain('You are signed in');
    expect(result.status).toBe(200);
    expect(result.session).toMatch(/^ls_/);
    const me = await sso.harness.api.get('/v1/me').set('Authorization', `Bearer ${result.session}`);
    expect(me.status).toBe(200);
    expect(crafting.tokenRequests.at(-1)!.body.get('code_verifier')).toMatch(/^[A-Za-z0-9_-]{43,}$/);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const rejected: [string, () => CraftedToken, RegExp][] = [
    ['wrong nonce', () => ({ claims: { nonce: 'another-nonce' } }), /"nonce" claim/],
    ['wrong audience', () => ({ claims: { aud: 'another-client' } }), /"aud" claim/],
    ['wrong issuer', () => ({ claims: { iss: 'https://issuer.invalid' } }), /"iss" claim/],
    ['bad signature', () => ({ foreignKey: true }), /signature/],
    ['expired token', () => ({ claims: { iat: now() - 3600, exp: now() - 600 } }), /clocks are synchronized/],
    ['iat beyond skew', () => ({ claims: { iat: now() + 600, exp: now() + 900 } }), /off by about \d+ s/],
    ['missing kid, two keys', () => ({ noKid: true }), /no usable "kid"/],
    ['email not verified', () => ({ claims: { email_verified: false } }), /has not verified the email/],
  ];

  test.each(rejected)('rejects %s', async (_name, crafted, message) => {
    const result = await signInWith(member, crafted());
    expect(result.status).toBe(401);
    expect(result.text).toMatch(message);
    expect(result.session).toBeUndefined();
  });

  test('rejects email mismatch', async () => {
    const other = uniqueEmail('other');
    await addAccountMember(sso.harness, accountId, environmentId, other);
    const result = await signInWith(member, {}, other);
    expect(result.status).toBe(401);
    expect(result.text).toContain('Sign in with the same address');
    expect(result.session).toBeUndefined();
  });

  test('rejects non-member', async () => {
    const stranger = uniqueEmail('stranger');
    const result = await signInWith(stranger, {});
    expect(result.status).toBe(401);
    expect(result.text).toContain('not an active member');
    expect(result.session).toBeUndefined();
  });

  test('rejects state mismatch', async () => {
    const { browser, nonce } = await startSignIn(member);
    const code = crafting.issueCode({ nonce, email: member });
    const result = await callback(browser, { code, state: 'a-state-this-browser-never-started' });
    expect(result.status).toBe(400);
    expect(result.text).toContain('does not belong to a sign-in started in this browser');
    expect(result.session).toBeUndefined();
  });

  test('rejects replayed code', async () => {
    const { browser, state, nonce } = await startSignIn(member);
    const code = crafting.issueCode({ nonce, email: member });
    expect((await callback(browser, { code, state })).status).toBe(200);

    // The same response again, with the state cookie put back as an attacker with the URL would.
    const replay = new Browser();
    replay.setCookie(sso.baseUrl, 'lc_sso_state', state);
    const result = await callback(replay, { code, state });
    expect(result.status).toBe(401);
    expect(result.text).toContain('already used');
    expect(result.session).toBeUndefined();
  });

  test('rejects provider error', async () => {
    const { browser, state } = await startSignIn(member);
    const result = await callback(browser, { state, error: 'invalid_request', error_description: 'redirect_uri is not registered' });
    expect(result.status).toBe(401);
    expect(result.text).toContain('Sign-in redirect URIs');
  });
});

describe('google sign-in', () => {
  let googleAccount: string;
  let googleEnvironment: string;
  let googleConnection: string;

  beforeAll(async () => {
    ({ accountId: googleAccount, environmentId: googleEnvironment } = await createTestAccount(sso.harness));
    const configured = await sso.harness.api
      .put(`/v1/accounts/${googleAccount}/sso/google`)
      .set('Authorization', `Bearer ${sso.operatorKey}`)
      .send({ allowedDomains: ['Example.com'] });
    expect(configured.status).toBe(200);
    expect(configured.body.allowedDomains).toEqual(['example.com']);
    googleConnection = configured.body.id;
  });

  async function googleSignIn(email: string, login: string) {
    const browser = new Browser();
    const page = await browser.follow(`${sso.baseUrl}/v1/auth/sso/start?email=${encodeURIComponent(email)}&connection=${googleConnection}`, { login });
    return { ...page, session: browser.cookie(sso.baseUrl, 'lc_session') };
  }

  test('allowed domain signs in', async () => {
    const email = uniqueEmail('workspace');
    await addAccountMember(sso.harness, googleAccount, googleEnvironment, email);
    google.users.set('workspace', { email, emailVerified: true, hostedDomain: 'example.com' });
    const page = await browser();
    expect(page).toBeDefined();
    const result = await googleSignIn(email, 'workspace');
    expect(result.status).toBe(200);
    expect(result.session).toMatch(/^ls_/);

    async function browser() {
      return new Browser().follow(`${sso.baseUrl}/login?email=${encodeURIComponent(email)}`).then((login) => {
        expect(login.text).toContain('with Google');
        return login;
      });
    }
  });

  test('missing hd claim rejected', async () => {
    const email = uniqueEmail('consumer');
    await addAccountMember(sso.harness, googleAccount, googleEnvironment, email);
    google.users.set('consumer', { email, emailVerified: true });
    const result = await googleSignIn(email, 'consumer');
    expect(result.status).toBe(401);
    expect(result.text).toContain('limited to addresses in example.com');
    expect(result.session).toBeUndefined();
  });

  test('other domain rejected', async () => {
    const email = `person.${randomBytes(4).toString('hex')}@elsewhere.test`;
    await addAccountMember(sso.harness, googleAccount, googleEnvironment, email);
    google.users.set('elsewhere', { email, emailVerified: true, hostedDomain: 'elsewhere.test' });
    const result = await googleSignIn(email, 'elsewhere');
    expect(result.status).toBe(401);
    expect(result.text).toContain('limited to addresses in example.com');
  });

  test('google domains validated', async () => {
    const response = await sso.harness.api
      .put(`/v1/accounts/${googleAccount}/sso/google`)
      .set('Authorization', `Bearer ${sso.operatorKey}`)
      .send({ allowedDomains: ['not a domain'] });
    expect(response.status).toBe(400);
    expect(response.body.error.details).toEqual([{ field: 'body.allowedDomains.0', rule: 'must be a domain name such as example.com' }]);
  });
});

describe('secret box', () => {
  const key = (id: string) => ({ id, key: randomBytes(32) });

  test('seals and opens with rotation', () => {
    const [k1, k2] = [key('k1'), key('k2')];
    const sealed = sealSecret([k1], 'client secret', 'connection-1');
    expect(sealed.keyId).toBe('k1');
    expect(sealed.ciphertext).not.toContain('client secret');
    // After rotation k2 encrypts, and k1 still opens what it sealed.
    expect(openSecret([k2, k1], sealed, 'connection-1')).toBe('client secret');
    expect(sealSecret([k2, k1], 'new secret', 'connection-1').keyId).toBe('k2');
  });

  test('rejects other row or key', () => {
    const k1 = key('k1');
    const sealed = sealSecret([k1], 'client secret', 'connection-1');
    expect(() => openSecret([k1], sealed, 'connection-2')).toThrow(SecretBoxError);
    expect(() => openSecret([key('k2')], sealed, 'connection-1')).toThrow('no longer lists');
    const tampered = { ...sealed, ciphertext: `${sealed.ciphertext.slice(0, -2)}AA` };
    expect(() => openSecret([k1], tampered, 'connection-1')).toThrow(SecretBoxError);
  });

  test('config validates keys', () => {
    expect(() => loadSsoConfig({ SSO_ENCRYPTION_KEYS: 'k1:c2hvcnQ=' })).toThrow('must be 32 bytes');
    expect(() => loadSsoConfig({ NODE_ENV: 'production', SSO_ALLOW_INSECURE_ISSUERS: 'true' })).toThrow('must be false when NODE_ENV=production');
    const keys = `k2:${randomBytes(32).toString('base64')},k1:${randomBytes(32).toString('base64')}`;
    expect(loadSsoConfig({ SSO_ENCRYPTION_KEYS: keys }).encryptionKeys.map((entry) => entry.id)).toEqual(['k2', 'k1']);
    expect(loadSsoConfig({}).google.issuer).toBe('https://accounts.google.com');
  });
});

describe('issuer address guard', () => {
  const strict = { allowInsecure: false, timeoutMs: 1000 };

  test.each([
    ['http://issuer.example.com', /must use https/],
    ['https://127.0.0.1', /loopback, private/],
    ['https://[::1]', /loopback, private/],
    ['https://10.1.2.3', /loopback, private/],
    ['https://169.254.169.254', /loopback, private/],
    ['https://192.168.0.10', /loopback, private/],
    ['https://localhost', /loopback, private/],
  ])('rejects %s', async (url, message) => {
    await expect(assertOutboundUrl(new URL(url), strict)).rejects.toThrow(OutboundUrlError);
    await expect(assertOutboundUrl(new URL(url), strict)).rejects.toThrow(message);
  });

  test('loopback allowed only by flag', async () => {
    await expect(assertOutboundUrl(new URL('http://127.0.0.1:8080'), { allowInsecure: true, timeoutMs: 1000 })).resolves.toBeUndefined();
    await expect(assertOutboundUrl(new URL('http://10.0.0.1'), { allowInsecure: true, timeoutMs: 1000 })).rejects.toThrow(OutboundUrlError);
  });
});
