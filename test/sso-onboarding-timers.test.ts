import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { ssoOnboardingStateQuery, type SsoOnboardingState } from '../workflows/sso.js';
import { eventually, uniqueEmail } from './support/harness.js';
import { CraftingOpenIdProvider } from './support/oidc-provider.js';
import { createTestAccount, startSsoHarness, type SsoHarness } from './support/sso-app.js';

const HISTORY_DIR = fileURLToPath(new URL('./histories/', import.meta.url));
const RECORDING = process.env.RECORD_HISTORIES === '1';
const CLIENT = { clientId: 'timer-client', clientSecret: 'timer-client-secret-0123456789' };

let sso: SsoHarness;
let crafting: CraftingOpenIdProvider;

beforeAll(async () => {
  crafting = new CraftingOpenIdProvider(CLIENT);
  await crafting.start();
  sso = await startSsoHarness({ SSO_ONBOARDING_TTL: '6s', SSO_ONBOARDING_REMINDER_AFTER: '1s', SSO_AUTO_APPROVE: 'true' });
});

afterAll(async () => {
  await sso?.close();
  await crafting?.stop();
});

async function startOnboarding(accountId: string, contact: string) {
  const response = await sso.harness.api
    .post(`/v1/accounts/${accountId}/sso/okta/onboarding`)
    .set('Authorization', `Bearer ${sso.operatorKey}`)
    .send({ contactEmail: contact });
  expect(response.status).toBe(202);
  return response.body as { workflowId: string; state: SsoOnboardingState };
}

function linkToken(contact: string, index = 0): string {
  const mail = sso.harness.sendgrid.deliveredTo(contact)[index]!;
  const text = mail.body.content.find((part) => part.type === 'text/plain')!.value;
  return decodeURIComponent(/\/sso\/onboarding\?token=([A-Za-z0-9_%-]+)/.exec(text)![1]!);
}

async function saveHistory(name: string, workflowId: string): Promise<void> {
  const handle = sso.harness.temporal.workflow.getHandle(workflowId);
  await handle.result();
  const json = execFileSync(
    process.env.LIFECYCLE_TEST_TEMPORAL_CLI!,
    ['workflow', 'show', '--workflow-id', workflowId, '--run-id', (await handle.describe()).runId, '--output', 'json', '--address', sso.harness.config.temporal.address],
    { encoding: 'utf8' },
  );
  await writeFile(`${HISTORY_DIR}${name}.json`, json.endsWith('\n') ? json : `${json}\n`);
}

async function submitCredentials(token: string, issuer: string) {
  return sso.harness.api.post('/v1/sso/onboarding/credentials').send({ token, clientId: CLIENT.clientId, clientSecret: CLIENT.clientSecret, issuer });
}

describe('onboarding timers and endings', () => {
  test('reminder, expiry and restart', async () => {
    const { harness } = sso;
    const { accountId } = await createTestAccount(harness);
    const contact = uniqueEmail('contact');
    const started = await startOnboarding(accountId, contact);

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 2);
    const [first, reminder] = harness.sendgrid.deliveredTo(contact);
    expect(reminder!.body.subject).toMatch(/^Reminder/);
    expect(linkToken(contact, 1)).toBe(linkToken(contact, 0));
    expect(first!.body.subject).toMatch(/^Set up single sign-on/);

    const handle = harness.temporal.workflow.getHandle(started.workflowId);
    expect((await handle.result()).phase).toBe('expired');
    const page = await harness.api.get(`/sso/onboarding?token=${encodeURIComponent(linkToken(contact))}`);
    expect(page.status).toBe(410);
    if (RECORDING) {
      await saveHistory('sso-onboarding-expired', started.workflowId);
    }

    const restarted = await startOnboarding(accountId, contact);
    expect(restarted.state.connectionId).toBe(started.state.connectionId);
    expect(restarted.state.onboardingId).not.toBe(started.state.onboardingId);
    const cancelled = await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/cancel`).set('Authorization', `Bearer ${sso.operatorKey}`);
    expect(cancelled.status).toBe(200);
  });

  test('operator cancels onboarding', async () => {
    const { harness } = sso;
    const { accountId } = await createTestAccount(harness);
    const contact = uniqueEmail('contact');
    const started = await startOnboarding(accountId, contact);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 1);

    const cancelled = await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/cancel`).set('Authorization', `Bearer ${sso.operatorKey}`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.state.phase).toBe('cancelled');
    const page = await harness.api.get(`/sso/onboarding?token=${encodeURIComponent(linkToken(contact))}`);
    expect(page.status).toBe(410);

    const byAdministrator = await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/cancel`).set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(byAdministrator.status).toBe(403);
    const approveUnknown = await harness.api.post('/v1/operator/sso/onboardings/no-such-account/approve').set('Authorization', `Bearer ${sso.operatorKey}`);
    expect(approveUnknown.status).toBe(404);
    if (RECORDING) {
      await saveHistory('sso-onboarding-cancelled', started.workflowId);
    }
  });

  test('issuer problems explained', async () => {
    const { harness } = sso;
    const { accountId } = await createTestAccount(harness);
    const contact = uniqueEmail('contact');
    await startOnboarding(accountId, contact);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 1);
    const token = linkToken(contact);

    const insecure = await harness.api.post('/v1/sso/onboarding/credentials').send({ token, clientId: 'id', clientSecret: 'secret', issuer: 'ftp://issuer.example.com' });
    expect(insecure.status).toBe(400);
    expect(insecure.body.error.details).toEqual([{ field: 'body.issuer', rule: 'must start with https://' }]);

    expect((await submitCredentials(token, 'http://127.0.0.1:9')).status).toBe(200);
    const unreachable = await harness.api.post('/v1/sso/onboarding/test').send({ token });
    expect(unreachable.status).toBe(422);
    expect(unreachable.body.error.code).toBe('issuer_unreachable');

    crafting.discoveryIssuer = 'https://someone-else.example.com';
    try {
      expect((await submitCredentials(token, crafting.issuer)).status).toBe(200);
      const mismatch = await harness.api.post('/v1/sso/onboarding/test').send({ token });
      expect(mismatch.status).toBe(422);
      expect(mismatch.body.error.code).toBe('issuer_mismatch');
      expect(mismatch.body.error.message).toContain('https://someone-else.example.com');
    } finally {
      crafting.discoveryIssuer = undefined;
    }
    const stored = await harness.db('sso_connections').where({ account_id: accountId }).first();
    expect(stored.status).toBe('testing');
    expect(stored.last_test_error).toContain('someone-else');
    await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/cancel`).set('Authorization', `Bearer ${sso.operatorKey}`).expect(200);
  });

  test('auto approval after confirmation', async () => {
    const { harness } = sso;
    const { accountId } = await createTestAccount(harness);
    const contact = uniqueEmail('contact');
    const started = await startOnboarding(accountId, contact);
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(contact).length === 1);
    const token = linkToken(contact);

    expect((await submitCredentials(token, crafting.issuer)).status).toBe(200);
    const early = await harness.api.post('/v1/sso/onboarding/confirm').send({ token });
    expect(early.status).toBe(409);

    const test = await harness.api.post('/v1/sso/onboarding/test').send({ token });
    expect(test.status).toBe(200);
    const authorization = new URL(test.body.authorizationUrl);
    const stateCookie = (test.headers['set-cookie'] as unknown as string[]).find((cookie) => cookie.startsWith('lc_sso_state='))!;
    expect(stateCookie).toMatch(/HttpOnly/);
    expect(stateCookie).toMatch(/SameSite=Lax/);
    const code = crafting.issueCode({ nonce: authorization.searchParams.get('nonce')!, email: contact });
    const callback = await harness.api
      .get(`/v1/auth/sso/callback?${new URLSearchParams({ code, state: authorization.searchParams.get('state')! })}`)
      .set('Cookie', stateCookie.split(';')[0]!);
    expect(callback.status).toBe(200);
    expect(callback.text).toContain('Connection test passed');

    const confirmed = await harness.api.post('/v1/sso/onboarding/confirm').send({ token });
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.status).toBe('awaiting_approval');

    const handle = harness.temporal.workflow.getHandle(started.workflowId);
    expect((await handle.result()).phase).toBe('active');
    expect((await harness.db('sso_connections').where({ account_id: accountId }).first()).status).toBe('active');
    // Auto approval sends no operator email.
    expect(harness.sendgrid.deliveredTo('operators@lifecycle.test')).toHaveLength(0);
    await eventually(async () => ((await handle.query(ssoOnboardingStateQuery)).phase === 'active' ? true : undefined));
    if (RECORDING) {
      await saveHistory('sso-onboarding-auto-approved', started.workflowId);
    }
  });
});
