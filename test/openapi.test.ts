import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { acceptedSchema, errorSchema, memberPageSchema, memberSchema } from '../api/schemas.js';
import { tokenIn } from './support/fake-sendgrid.js';
import { startHarness, uniqueEmail, type Harness } from './support/harness.js';

/** The documented response schemas must accept what the API really sends. */

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness();
});

afterAll(async () => {
  await harness?.close();
});

describe('OpenAPI document', () => {
  test('served with every route', async () => {
    const response = await harness.api.get('/v1/openapi.json');
    expect(response.status).toBe(200);
    expect(response.body.openapi).toBe('3.1.0');
    expect(Object.keys(response.body.paths)).toEqual(
      expect.arrayContaining([
        '/v1/accounts/{accountId}/environments/{environment}/users',
        '/v1/accounts/{accountId}/environments/{environment}/users/{userId}',
        '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/invitation/resend',
        '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/invitation/revoke',
        '/v1/invitations/accept',
        '/v1/roles',
      ]),
    );
    expect(response.body.components.schemas.InviteRequest.required).toEqual(['email', 'roles']);
  });

  test('responses match documented schemas', async () => {
    const path = `/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`;
    const authorization = `Bearer ${harness.seed.adminKey}`;
    const email = uniqueEmail('documented');

    const invited = await harness.api.post(path).set('Authorization', authorization).send({ email, roles: ['meter_viewer'] });
    expect(invited.status).toBe(202);
    expect(memberSchema.safeParse(invited.body).error).toBeUndefined();

    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const accepted = await harness.api
      .post('/v1/invitations/accept')
      .send({ token: tokenIn(harness.sendgrid.deliveredTo(email)[0]!), password: 'documented password' });
    expect(accepted.status).toBe(200);
    expect(acceptedSchema.safeParse(accepted.body).error).toBeUndefined();

    const page = await harness.api.get(path).set('Authorization', authorization);
    expect(page.status).toBe(200);
    expect(memberPageSchema.safeParse(page.body).error).toBeUndefined();

    const invalid = await harness.api.post(path).set('Authorization', authorization).send({ email, roles: [] });
    expect(invalid.status).toBe(400);
    expect(errorSchema.safeParse(invalid.body).error).toBeUndefined();
  });
});
