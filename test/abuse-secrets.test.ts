import { readdir, readFile } from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { AesGcmPayloadCodec } from '../lib/payload-codec.js';
import { HISTORY_DIR } from './support/histories.js';
import { eventually, uniqueEmail, type Harness } from './support/harness.js';
import { recordedSecrets, scanForSecrets, type ScanSources } from './support/secret-scan.js';
import { startSsoHarness, type SsoHarness } from './support/sso-app.js';

/**
 * Secrets in logs and workflow histories. Every harness scans its own log lines and the histories of
 * its task queue when it closes (test/support/harness.ts), so each test file of the suite checks what
 * it produced. A single scan at the end of the run would depend on Jest's file order, and global
 * teardown has already stopped the Temporal server that stores the histories. This file runs a scenario
 * that carries every kind of secret through the API, checks that the scan knows each of them and
 * finds none, shows that the scan finds a planted one, and scans the committed histories that
 * test/replay.test.ts replays.
 */

const PASSWORD = 'first secret-scan password';
const NEW_PASSWORD = 'second secret-scan password';
const RESET_PASSWORD = 'third secret-scan password';
const CLIENT_SECRET = 'secret-scan-okta-client-secret';

let sso: SsoHarness;
let harness: Harness;
/** Every secret the scenario handled, by kind. */
const used: Record<string, string> = {};

function bearer(token: string): string {
  return `Bearer ${token}`;
}

async function mailedToken(to: string, path: string): Promise<string> {
  await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(to).some((mail) => mail.body.content[0]!.value.includes(`${path}?token=`)));
  const mail = harness.sendgrid.deliveredTo(to).filter((item) => item.body.content[0]!.value.includes(`${path}?token=`)).at(-1)!;
  const link = new RegExp(`${path.replace(/[/.]/g, '\\$&')}\\?token=([A-Za-z0-9_%-]+)`).exec(mail.body.content[0]!.value)![1]!;
  return decodeURIComponent(link);
}

function sources(extra: Partial<ScanSources> = {}): ScanSources {
  return {
    logLines: harness.logLines,
    sendgrid: harness.sendgrid,
    temporal: harness.temporal,
    payloadCodec: new AesGcmPayloadCodec(harness.config.temporal.payloadKeys),
    taskQueue: harness.config.temporal.taskQueue,
    configuredSecrets: [harness.config.appSecret],
    ...extra,
  };
}

beforeAll(async () => {
  sso = await startSsoHarness({});
  harness = sso.harness;
  const { accountId, adminKey } = harness.seed;
  const usersPath = `/v1/accounts/${accountId}/environments/sandbox/users`;

  // An invitation accepted with a password, then a sign-in.
  const email = uniqueEmail('secret-scan');
  expect((await harness.api.post(usersPath).set('Authorization', bearer(adminKey)).send({ email, roles: ['user_administrator'] })).status).toBe(202);
  used.invitationToken = await mailedToken(email, '/invitations/accept');
  expect((await harness.api.post('/v1/invitations/accept').send({ token: used.invitationToken, password: PASSWORD })).status).toBe(200);
  used.password = PASSWORD;
  const login = await harness.api.post('/v1/auth/login').send({ email, password: PASSWORD });
  expect(login.status).toBe(200);
  const sessionToken = login.body.token as string;
  used.sessionToken = sessionToken;
  expect((await harness.api.get(usersPath).set('Authorization', bearer(sessionToken))).status).toBe(200);
  expect((await harness.api.get('/v1/me').set('Cookie', `lc_session=${sessionToken}`)).status).toBe(200);
  // The form sign-in returns the session in a Set-Cookie header.
  const formLogin = await harness.api.post('/v1/auth/login').type('form').set('Origin', sso.baseUrl).send({ email, password: PASSWORD });
  expect(formLogin.status).toBe(200);
  expect(String(formLogin.headers['set-cookie'])).toContain('lc_session=ls_');
  used.apiKey = adminKey;

  // A password change, an email change and a password reset, each with its link.
  const changed = await harness.api.post('/v1/me/password').set('Authorization', bearer(sessionToken)).send({ currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
  expect(changed.status).toBe(200);
  used.newPassword = NEW_PASSWORD;
  const newEmail = uniqueEmail('secret-scan-new');
  expect((await harness.api.post('/v1/me/email').set('Authorization', bearer(sessionToken)).send({ newEmail, currentPassword: NEW_PASSWORD })).status).toBe(202);
  used.emailChangeToken = await mailedToken(newEmail, '/email-changes/confirm');
  expect((await harness.api.post('/v1/email-changes/confirm').send({ token: used.emailChangeToken })).status).toBe(200);
  expect((await harness.api.post('/v1/auth/password-reset').send({ email: newEmail })).status).toBe(202);
  used.resetToken = await mailedToken(newEmail, '/password-reset');
  expect((await harness.api.post('/v1/auth/password-reset/confirm').send({ token: used.resetToken, password: RESET_PASSWORD })).status).toBe(200);
  used.resetPassword = RESET_PASSWORD;

  // An SSO onboarding with a client secret, started and cancelled with an operator key.
  const contact = uniqueEmail('secret-scan-contact');
  const started = await harness.api.post(`/v1/accounts/${accountId}/sso/okta/onboarding`).set('Authorization', bearer(sso.operatorKey)).send({ contactEmail: contact });
  expect(started.status).toBe(202);
  used.operatorKey = sso.operatorKey;
  used.setupToken = await mailedToken(contact, '/sso/onboarding');
  const credentials = await harness.api
    .post('/v1/sso/onboarding/credentials')
    .send({ token: used.setupToken, clientId: 'secret-scan-client', clientSecret: CLIENT_SECRET, issuer: 'http://127.0.0.1:9' });
  expect(credentials.status).toBe(200);
  used.clientSecret = CLIENT_SECRET;
  expect((await harness.api.post(`/v1/operator/sso/onboardings/${accountId}/cancel`).set('Authorization', bearer(sso.operatorKey))).status).toBe(200);

  // A deactivation by the operator, which ends the sessions and revokes keys.
  expect((await harness.api.post('/v1/operator/users/deactivate').set('Authorization', bearer(sso.operatorKey)).send({ email: newEmail })).status).toBe(200);

  // The workflows of the scenario must have written their histories before the scan reads them.
  await eventually(async () => {
    let open = 0;
    for await (const execution of harness.temporal.workflow.list({ query: `TaskQueue = '${harness.config.temporal.taskQueue}' AND ExecutionStatus = 'Running'` })) {
      open += execution.workflowId.startsWith('invitation-') ? 0 : 1;
    }
    return open === 0 ? true : undefined;
  }, 30_000, 'the scenario workflows to close');
});

afterAll(async () => {
  // close() scans again; it fails if a planted line below were left behind.
  await sso?.close();
});

describe('secrets scan', () => {
  test('scan knows every secret used', () => {
    const recorded = recordedSecrets();
    for (const [kind, secret] of Object.entries(used)) {
      expect(`${kind}: ${recorded.has(secret)}`).toBe(`${kind}: true`);
    }
  });

  test('no secret in logs or histories', async () => {
    const workflows: string[] = [];
    for await (const execution of harness.temporal.workflow.list({ query: `TaskQueue = '${harness.config.temporal.taskQueue}'` })) {
      workflows.push(execution.workflowId);
    }
    // The scenario ran invitation, email change, password reset, SSO onboarding and deactivation workflows.
    expect(workflows.length).toBeGreaterThanOrEqual(5);
    expect(harness.logLines.length).toBeGreaterThan(20);

    expect(await scanForSecrets(sources())).toEqual([]);
  });

  test.each(['password', 'newPassword', 'invitationToken', 'resetToken', 'clientSecret', 'sessionToken', 'apiKey', 'operatorKey'])(
    'planted %s is found',
    async (kind) => {
      const planted = JSON.stringify({ level: 30, msg: 'planted by the secret scan test', value: `x${used[kind]}x` });
      const leaks = await scanForSecrets(sources({ logLines: [...harness.logLines, planted] }));
      expect(leaks.some((leak) => leak.where.startsWith(`log line ${harness.logLines.length + 1} after`))).toBe(true);
      // The report names the kind of secret and never repeats it in full.
      expect(JSON.stringify(leaks)).not.toContain(used[kind]);
    },
  );

  test('recorded histories hold no secret', async () => {
    const credentialFormat = /\b(ls_[A-Za-z0-9_-]{43}|l[co]_[0-9a-f]{12}_[A-Za-z0-9_-]{43})/;
    const secretField = /"(password|currentPassword|newPassword|token|clientSecret|client_secret)"\s*:/;
    const files = (await readdir(HISTORY_DIR)).filter((name) => name.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);

    const found: string[] = [];
    let payloadCount = 0;
    for (const file of files) {
      const text = await readFile(`${HISTORY_DIR}${file}`, 'utf8');
      // Payloads are base64 in the CLI's JSON; their decoded text is what a reader of the history reads.
      const payloads = [...text.matchAll(/"data":\s*"([A-Za-z0-9+/=]+)"/g)].map((match) => Buffer.from(match[1]!, 'base64').toString('utf8'));
      payloadCount += payloads.length;
      for (const part of [text, ...payloads]) {
        if (credentialFormat.test(part) || secretField.test(part)) {
          found.push(`${file}: ${part.slice(0, 120)}`);
        }
      }
    }
    expect(payloadCount).toBeGreaterThan(files.length);
    expect(found).toEqual([]);
  });
});
