import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { ssoOnboardingStateQuery, ssoOnboardingWorkflowId } from '../workflows/sso.js';
import { uniqueEmail } from './support/harness.js';
import { startSsoHarness, type SsoHarness } from './support/sso-app.js';

let sso: SsoHarness;

beforeAll(async () => {
  sso = await startSsoHarness({});
});

afterAll(async () => {
  await sso?.close();
});

describe('deactivation and SSO onboarding', () => {
  test('deactivation cancels started onboarding', async () => {
    const { harness } = sso;
    const starter = await harness.addMember(uniqueEmail('sso-starter'), ['administrator']);
    const usersPath = `/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`;

    const started = await harness.api
      .post(`/v1/accounts/${harness.seed.accountId}/sso/okta/onboarding`)
      .set('Authorization', `Bearer ${starter.key}`)
      .send({ contactEmail: uniqueEmail('it-contact') });
    expect(started.status).toBe(202);
    const onboarding = harness.temporal.workflow.getHandle(ssoOnboardingWorkflowId(harness.seed.accountId));

    const preview = await harness.api
      .get(`${usersPath}/${starter.userId}/deactivation-preview`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(preview.status).toBe(200);
    expect(preview.body.impact.ssoOnboardings).toBe(1);

    const deactivated = await harness.api
      .post(`${usersPath}/${starter.userId}/deactivate`)
      .set('Authorization', `Bearer ${harness.seed.adminKey}`);
    expect(deactivated.status).toBe(200);
    expect(deactivated.body.deactivation.impact).toEqual(preview.body.impact);

    expect((await onboarding.query(ssoOnboardingStateQuery)).phase).toBe('cancelled');
    const row = await harness.db('sso_onboardings').where({ workflow_id: onboarding.workflowId }).first('status', 'started_by_user_id');
    expect(row).toEqual({ status: 'cancelled', started_by_user_id: starter.userId });
  });
});
