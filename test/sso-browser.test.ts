import { existsSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chromium, type Browser, type Page } from 'playwright-core';

import { uniqueEmail } from './support/harness.js';
import { LocalOpenIdProvider } from './support/oidc-provider.js';
import { freePort, startSsoHarness, type SsoHarness } from './support/sso-app.js';

const CHROMIUM = '/usr/bin/chromium';
const CLIENT_SECRET = 'browser-client-secret-0123456789';

let sso: SsoHarness;
let okta: LocalOpenIdProvider;
let browser: Browser;

beforeAll(async () => {
  // The browser test must not pass by skipping: without Chromium it fails with the package to install.
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}; install the Debian package "chromium" (apt-get install chromium) to run the browser test.`);
  }
  const port = await freePort();
  okta = new LocalOpenIdProvider([{ clientId: 'browser-client', clientSecret: CLIENT_SECRET, redirectUris: [`http://127.0.0.1:${port}/v1/auth/sso/callback`] }]);
  await okta.start();
  sso = await startSsoHarness({}, { port });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await sso?.close();
  await okta?.stop();
});

/** Signs in on the provider's development login form, then gives consent. */
async function signInAtProvider(page: Page, login: string): Promise<void> {
  await page.waitForSelector('input[name="login"]');
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', 'any password');
  await page.click('button[type="submit"]');
  await page.waitForSelector('button:has-text("Continue")');
  await page.click('button:has-text("Continue")');
}

describe('sso in a browser', () => {
  test('setup page and sign-in', async () => {
    const { harness } = sso;
    const { accountId, adminKey } = harness.seed;
    const contact = uniqueEmail('contact');
    okta.users.set('contact', { email: contact, emailVerified: true });
    const started = await harness.api.post(`/v1/accounts/${accountId}/sso/okta/onboarding`).set('Authorization', `Bearer ${adminKey}`).send({ contactEmail: contact });
    expect(started.status).toBe(202);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 1);
    const text = harness.sendgrid.deliveredTo(contact)[0]!.body.content.find((part) => part.type === 'text/plain')!.value;
    const link = /https?:\/\/\S+\/sso\/onboarding\?token=[A-Za-z0-9_%-]+/.exec(text)![0];

    const setup = await browser.newContext();
    const page = await setup.newPage();
    await page.goto(link);
    expect(await page.textContent('#redirect-uri')).toBe(`${sso.baseUrl}/v1/auth/sso/callback`);
    await page.fill('#clientId', 'browser-client');
    await page.fill('#clientSecret', CLIENT_SECRET);
    await page.fill('#issuer', okta.issuer);
    await page.click('#save-credentials');
    await page.waitForSelector('text=Credentials saved');

    await page.click('#test-connection');
    await signInAtProvider(page, 'contact');
    await page.waitForSelector('text=Connection test passed');
    await page.click('#back');
    await page.click('#confirm-setup');
    await page.waitForSelector('#status');
    expect(await page.textContent('#status')).toContain('Platform support will approve');

    const approved = await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/approve`).set('Authorization', `Bearer ${sso.operatorKey}`);
    expect(approved.body.state.phase).toBe('active');

    const ada = uniqueEmail('ada');
    await harness.addMember(ada, ['customer_viewer']);
    okta.users.set('ada', { email: ada, emailVerified: true });
    const member = await browser.newContext();
    const signIn = await member.newPage();
    await signIn.goto(`${sso.baseUrl}/login`);
    await signIn.fill('#email', ada);
    await signIn.click('#continue');
    await signIn.click('a[id^="sso-"]');
    await signInAtProvider(signIn, 'ada');
    await signIn.waitForSelector('text=You are signed in');

    const session = (await member.cookies(sso.baseUrl)).find((cookie) => cookie.name === 'lc_session')!;
    expect(session.httpOnly).toBe(true);
    expect(session.sameSite).toBe('Lax');
    const me = await harness.api.get('/v1/me').set('Authorization', `Bearer ${session.value}`);
    expect(me.body.user.email).toBe(ada);

    await setup.close();
    await member.close();
  });
});
