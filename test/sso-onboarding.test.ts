import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { passwordLoginAllowed } from '../api/sso/store.js';
import { hashPassword } from '../lib/passwords.js';
import { ssoOnboardingStateQuery } from '../workflows/sso.js';
import { eventually, uniqueEmail } from './support/harness.js';
import { Browser, formWithButton, LocalOpenIdProvider } from './support/oidc-provider.js';
import { addAccountMember, createTestAccount, freePort, startSsoHarness, type SsoHarness } from './support/sso-app.js';

const HISTORY_DIR = fileURLToPath(new URL('./histories/', import.meta.url));
const RECORDING = process.env.RECORD_HISTORIES === '1';
const CLIENT_SECRET = 'okta-client-secret-0123456789abcdef';

let sso: SsoHarness;
let okta: LocalOpenIdProvider;

beforeAll(async () => {
  const port = await freePort();
  // The provider must know the redirect URI before the app starts, so the app's port is chosen first.
  okta = new LocalOpenIdProvider([{ clientId: 'okta-client', clientSecret: CLIENT_SECRET, redirectUris: [`http://127.0.0.1:${port}/v1/auth/sso/callback`] }]);
  await okta.start();
  sso = await startSsoHarness({}, { port });
});

afterAll(async () => {
  await sso?.close();
  await okta?.stop();
});

function onboardingLink(to: string): string {
  const mail = sso.harness.sendgrid.deliveredTo(to).at(-1)!;
  const text = mail.body.content.find((part) => part.type === 'text/plain')!.value;
  return /https?:\/\/\S+\/sso\/onboarding\?token=[A-Za-z0-9_%-]+/.exec(text)![0];
}

async function submitForm(browser: Browser, page: string, buttonId: string, extra: Record<string, string> = {}, login?: string) {
  const form = formWithButton(page, buttonId);
  return browser.follow(new URL(form.action, sso.baseUrl).href, { form: { ...form.fields, ...extra }, ...(login ? { login } : {}) });
}

async function saveHistory(name: string, workflowId: string): Promise<void> {
  const handle = sso.harness.temporal.workflow.getHandle(workflowId);
  const json = execFileSync(
    process.env.LIFECYCLE_TEST_TEMPORAL_CLI!,
    ['workflow', 'show', '--workflow-id', workflowId, '--run-id', (await handle.describe()).runId, '--output', 'json', '--address', sso.harness.config.temporal.address],
    { encoding: 'utf8' },
  );
  await writeFile(`${HISTORY_DIR}${name}.json`, json.endsWith('\n') ? json : `${json}\n`);
}

describe('okta onboarding', () => {
  test('onboarding to first sign-in', async () => {
    const { harness } = sso;
    const { accountId, adminKey } = harness.seed;
    const contact = uniqueEmail('contact');
    okta.users.set('contact', { email: contact, emailVerified: true });

    const started = await harness.api.post(`/v1/accounts/${accountId}/sso/okta/onboarding`).set('Authorization', `Bearer ${adminKey}`).send({ contactEmail: contact });
    expect(started.status).toBe(202);
    expect(started.body.workflowId).toBe(`sso-onboarding-${accountId}`);
    expect(started.body.redirectUri).toBe(`${sso.baseUrl}/v1/auth/sso/callback`);
    expect(started.body.state.phase).toBe('waiting_for_credentials');

    const again = await harness.api.post(`/v1/accounts/${accountId}/sso/okta/onboarding`).set('Authorization', `Bearer ${adminKey}`).send({ contactEmail: contact });
    expect(again.status).toBe(409);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 1);
    const browser = new Browser();
    const page = await browser.follow(onboardingLink(contact));
    expect(page.status).toBe(200);
    expect(page.text).toContain(`${sso.baseUrl}/v1/auth/sso/callback`);

    // A form post without the page's CSRF token changes nothing.
    const token = decodeURIComponent(new URL(onboardingLink(contact)).searchParams.get('token')!);
    const forged = await browser.request(`${sso.baseUrl}/v1/sso/onboarding/credentials`, {
      form: { token, clientId: 'okta-client', clientSecret: 'forged', issuer: okta.issuer },
    });
    expect(forged.status).toBe(403);
    expect(await forged.text()).toContain('did not come from the setup page');
    expect((await harness.db('sso_connections').where({ account_id: accountId, type: 'okta' }).first()).client_id).toBeNull();

    // A wrong client secret fails the test with a message that names the secret.
    const wrongSaved = await submitForm(browser, page.text, 'save-credentials', { clientId: 'okta-client', clientSecret: 'not-the-secret', issuer: okta.issuer });
    expect(wrongSaved.status).toBe(200);
    expect(wrongSaved.text).toContain('Credentials saved');
    const wrongTest = await submitForm(browser, wrongSaved.text, 'test-connection', {}, 'contact');
    expect(wrongTest.status).toBe(422);
    expect(wrongTest.text).toContain('client secret');

    // The correct secret; the test signs in at the provider and passes.
    const setupPage = await browser.follow(onboardingLink(contact));
    const saved = await submitForm(browser, setupPage.text, 'save-credentials', { clientId: 'okta-client', clientSecret: CLIENT_SECRET, issuer: okta.issuer });
    const stored = await harness.db('sso_connections').where({ account_id: accountId, type: 'okta' }).first();
    expect(stored.status).toBe('testing');
    expect(stored.client_secret_key_id).toBe('k2');
    expect(stored.client_secret_ciphertext).not.toContain(CLIENT_SECRET);
    const tested = await submitForm(browser, saved.text, 'test-connection', {}, 'contact');
    expect(tested.status).toBe(200);
    expect(tested.text).toContain('Connection test passed');
    expect((await harness.db('sso_connections').where({ id: stored.id }).first()).status).toBe('tested');

    const handle = harness.temporal.workflow.getHandle(started.body.workflowId);
    await eventually(async () => ((await handle.query(ssoOnboardingStateQuery)).phase === 'tested' ? true : undefined));

    const back = /id="back" href="([^"]+)"/.exec(tested.text)![1]!.replace(/&amp;/g, '&');
    const beforeConfirm = await browser.follow(back);
    const confirmed = await submitForm(browser, beforeConfirm.text, 'confirm-setup');
    expect(confirmed.status).toBe(200);
    expect(confirmed.text).toContain('Platform support will approve');

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo('operators@lifecycle.test').length === 1);
    expect((await handle.query(ssoOnboardingStateQuery)).phase).toBe('awaiting_approval');

    const approved = await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/approve`).set('Authorization', `Bearer ${sso.operatorKey}`);
    expect(approved.status).toBe(200);
    expect(approved.body.state.phase).toBe('active');
    expect((await harness.db('sso_connections').where({ id: stored.id }).first()).status).toBe('active');

    // A member signs in with Okta from the sign-in page.
    const ada = uniqueEmail('ada');
    const member = await harness.addMember(ada, ['customer_viewer']);
    okta.users.set('ada', { email: ada.toUpperCase(), emailVerified: true });
    const signIn = new Browser();
    const loginPage = await signIn.follow(`${sso.baseUrl}/login?email=${encodeURIComponent(ada)}`);
    const start = /href="(\/v1\/auth\/sso\/start[^"]+)"/.exec(loginPage.text)![1]!.replace(/&amp;/g, '&');
    const signedIn = await signIn.follow(new URL(start, sso.baseUrl).href, { login: 'ada' });
    expect(signedIn.status).toBe(200);
    expect(signedIn.text).toContain(`signed in as ${ada}`);
    const session = signIn.cookie(sso.baseUrl, 'lc_session')!;
    const me = await harness.api.get('/v1/me').set('Authorization', `Bearer ${session}`);
    expect(me.status).toBe(200);
    expect(me.body.user.id).toBe(member.userId);

    // Password login off for the account, now that a connection is active.
    const settings = await harness.api.put(`/v1/accounts/${accountId}/settings`).set('Authorization', `Bearer ${adminKey}`).send({ passwordLoginEnabled: false });
    expect(settings.status).toBe(200);
    expect(await passwordLoginAllowed(harness.db, member.userId)).toBe(false);
    const offPage = await signIn.follow(`${sso.baseUrl}/login?email=${encodeURIComponent(ada)}`);
    expect(offPage.text).not.toContain('type="password"');
    await harness.db('users').where({ id: member.userId }).update({ password_hash: await hashPassword('a password for ada') });
    const passwordLogin = await harness.api.post('/v1/auth/login').send({ email: ada, password: 'a password for ada' });
    expect(passwordLogin.status).toBe(403);
    expect(passwordLogin.body.error.code).toBe('password_login_disabled');

    // The client secret reached neither the logs nor the workflow history.
    const history = JSON.stringify(await handle.fetchHistory());
    expect(history).not.toContain(CLIENT_SECRET);
    expect(harness.logLines.join('\n')).not.toContain(CLIENT_SECRET);

    const events = await harness.db('audit_events').where({ account_id: accountId }).where('action', 'like', 'sso.%').pluck('action');
    expect(events).toEqual(expect.arrayContaining(['sso.onboarding.started', 'sso.connection.credentials_submitted', 'sso.connection.test_passed', 'sso.onboarding.confirmed', 'sso.connection.activated', 'sso.signed_in']));

    if (RECORDING) {
      await handle.result();
      await saveHistory('sso-onboarding-approved', started.body.workflowId);
    }
  });

  test('password login needs active connection', async () => {
    const { accountId, environmentId } = await createTestAccount(sso.harness);
    const admin = await addAccountMember(sso.harness, accountId, environmentId, uniqueEmail('admin'), ['administrator']);
    const response = await sso.harness.api.put(`/v1/accounts/${accountId}/settings`).set('Authorization', `Bearer ${admin.key}`).send({ passwordLoginEnabled: false });
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('sso_connection_required');
    expect(await passwordLoginAllowed(sso.harness.db, admin.userId)).toBe(true);
  });

  test('non-administrator cannot start onboarding', async () => {
    const viewer = await sso.harness.addMember(uniqueEmail('viewer'), ['customer_viewer']);
    const response = await sso.harness.api
      .post(`/v1/accounts/${sso.harness.seed.accountId}/sso/okta/onboarding`)
      .set('Authorization', `Bearer ${viewer.key}`)
      .send({ contactEmail: uniqueEmail('contact') });
    expect(response.status).toBe(403);
  });

  test('onboarding rejects invalid contact email', async () => {
    const { accountId } = await createTestAccount(sso.harness);
    const response = await sso.harness.api
      .post(`/v1/accounts/${accountId}/sso/okta/onboarding`)
      .set('Authorization', `Bearer ${sso.operatorKey}`)
      .send({ contactEmail: 'not an email' });
    expect(response.status).toBe(400);
    expect(response.body.error.details).toEqual([{ field: 'body.contactEmail', rule: 'must be a valid email address' }]);
    const unknown = await sso.harness.api
      .post('/v1/accounts/no-such-account/sso/okta/onboarding')
      .set('Authorization', `Bearer ${sso.operatorKey}`)
      .send({ contactEmail: uniqueEmail('contact') });
    expect(unknown.status).toBe(404);
  });
});
