import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiResponsesObject } from 'zod-openapi';

import {
  acceptRequestSchema,
  acceptedSchema,
  errorSchema,
  idempotencyHeader,
  inviteRequestSchema,
  listMembersQuerySchema,
  memberPageSchema,
  memberSchema,
  roleSchema,
} from './schemas.js';
import { accountSettingsPaths, accountSettingsSecuritySchemes } from './openapi-account-settings.js';
import { bulkOpenApiPaths } from './openapi-bulk.js';
import { codecOpenApiPaths } from './openapi-codec.js';
import { memberChangePaths, memberChangeSecuritySchemes } from './openapi-member-changes.js';
import { ssoOpenApiPaths } from './openapi-sso.js';
import { systemOpenApiPaths } from './openapi-system.js';
import { auditEventSchema, auditQuerySchema } from './routes/audit.js';

const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const failure = (description: string) => ({ description, ...json(errorSchema) });

const environmentPath = z.object({
  accountId: z.string().meta({ description: 'Account id, for example `demo`.' }),
  environment: z.string().meta({ description: 'Environment name, for example `sandbox`.' }),
});
const memberPath = environmentPath.extend({ userId: z.uuid().meta({ description: 'The member\'s user id.' }) });

const membershipSummarySchema = z
  .object({ accountId: z.string(), accountName: z.string(), environment: z.string(), status: z.string(), roles: z.array(z.string()) })
  .meta({ id: 'MembershipSummary' });

const managerFailures: ZodOpenApiResponsesObject = {
  '401': failure('Missing, unknown or revoked API key.'),
  '403': failure('The key is for another account or environment, or its owner may not manage users.'),
  '503': failure('The database is unreachable at the moment; retry after the seconds in the Retry-After header.'),
};

function memberOperation(summary: string, extra: ZodOpenApiResponsesObject): ZodOpenApiOperationObject {
  return {
    summary,
    security: [{ apiKey: [] }],
    requestParams: { path: memberPath },
    responses: { '200': { description: 'The member after the change.', ...json(memberSchema) }, ...managerFailures, ...extra },
  };
}

/** Builds the OpenAPI 3.1 document served at GET /v1/openapi.json and GET /openapi.json. */
export function buildOpenApiDocument(serverUrl: string) {
  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Lifecycle API',
      version: '1.0.0',
      description:
        'Invites people to account environments and manages their memberships. Each invitation is a Temporal workflow; its id is in `invitation.workflowId`.',
    },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: {
        ...memberChangeSecuritySchemes,
        ...accountSettingsSecuritySchemes,
        apiKey: { type: 'http', scheme: 'bearer', description: 'An API key (`lc_…`), a session token (`ls_…`) or, on /v1/operator routes, an operator key (`lo_…`).' },
      },
    },
    paths: {
      ...memberChangePaths,
      ...accountSettingsPaths,
      ...ssoOpenApiPaths,
      ...bulkOpenApiPaths,
      ...systemOpenApiPaths,
      ...codecOpenApiPaths,
      '/v1/accounts/{accountId}/environments/{environment}/users': {
        post: {
          summary: 'Invite a person',
          description:
            'Starts an invitation workflow and answers once the invitation is recorded. The email with the link goes out right after. An `Idempotency-Key` header makes retries safe.',
          security: [{ apiKey: [] }],
          requestParams: {
            path: environmentPath,
            header: idempotencyHeader,
          },
          requestBody: json(inviteRequestSchema),
          responses: {
            '202': { description: 'Invitation recorded; the member is `invited`.', ...json(memberSchema) },
            '400': failure('Invalid body; `details` lists each field and rule.'),
            ...managerFailures,
            '409': failure('Already a member, already invited, or the Idempotency-Key is in use.'),
            '422': failure('The Idempotency-Key was used for a different request.'),
          },
        },
        get: {
          summary: 'List members',
          security: [{ apiKey: [] }],
          requestParams: { path: environmentPath, query: listMembersQuerySchema },
          responses: {
            '200': { description: 'One page of members, ordered by email.', ...json(memberPageSchema) },
            '400': failure('Invalid query parameter.'),
            ...managerFailures,
          },
        },
      },
      '/v1/accounts/{accountId}/environments/{environment}/users/{userId}': {
        get: memberOperation('Get a member', { '404': failure('No such member in this environment.') }),
      },
      '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/invitation/resend': {
        post: {
          ...memberOperation('Resend the invitation with a new link', {
            '404': failure('No such member in this environment.'),
            '409': failure('No pending invitation, the resend limit is reached, or the Idempotency-Key is in use.'),
            '422': failure('The Idempotency-Key was used for a different request.'),
            '429': failure('Resent too recently; see the Retry-After header.'),
          }),
          description: 'Sends a new link, and the old one stops working. An `Idempotency-Key` header makes a retry return the first response instead of sending another email.',
          requestParams: { path: memberPath, header: idempotencyHeader },
        },
      },
      '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/invitation/revoke': {
        post: memberOperation('Revoke the pending invitation', {
          '404': failure('No such member in this environment.'),
          '409': failure('No pending invitation.'),
        }),
      },
      '/v1/invitations/accept': {
        post: {
          summary: 'Accept an invitation',
          description: 'Also accepts the form of the page at GET /invitations/accept and then responds with HTML.',
          requestBody: json(acceptRequestSchema),
          responses: {
            '200': { description: 'The membership is active.', ...json(acceptedSchema) },
            '400': failure('Password missing or breaking a rule.'),
            '410': failure('The link was used, replaced, revoked or has expired.'),
            '429': failure('Too many attempts from this address.'),
          },
        },
      },
      '/v1/accounts/{accountId}/environments/{environment}/audit-events': {
        get: {
          summary: 'List audit events',
          description: 'Every change to memberships and invitations of the environment, newest first.',
          security: [{ apiKey: [] }],
          requestParams: { path: environmentPath, query: auditQuerySchema },
          responses: {
            '200': {
              description: 'One page of events.',
              ...json(z.object({ data: z.array(auditEventSchema), nextCursor: z.string().nullable() })),
            },
            '400': failure('Invalid query parameter.'),
            ...managerFailures,
          },
        },
      },
      '/v1/auth/login': {
        post: {
          summary: 'Sign in with email and password',
          requestBody: json(z.object({ email: z.string(), password: z.string() })),
          responses: {
            '200': {
              description: 'A session token (shown once), its expiry, and the active memberships.',
              ...json(
                z.object({
                  token: z.string(),
                  expiresAt: z.iso.datetime(),
                  idleTimeoutSeconds: z.number().int(),
                  user: z.object({ id: z.uuid(), email: z.string() }),
                  memberships: z.array(membershipSummarySchema),
                }),
              ),
            },
            '401': failure('The email address or password is incorrect; the same answer for an unknown email.'),
            '403': failure('No active membership.'),
            '429': failure('Too many attempts for this email or from this address; see Retry-After.'),
          },
        },
      },
      '/v1/auth/logout': {
        post: { summary: 'End the current session', security: [{ apiKey: [] }], responses: { '204': { description: 'Signed out.' } } },
      },
      '/v1/me': {
        get: {
          summary: 'The caller and their memberships',
          security: [{ apiKey: [] }],
          responses: {
            '200': {
              description: 'Memberships in every account and environment, with roles.',
              ...json(z.object({ user: z.object({ id: z.uuid(), email: z.string() }), memberships: z.array(membershipSummarySchema) })),
            },
            '401': failure('Missing or ended credential.'),
          },
        },
      },
      '/v1/roles': {
        get: {
          summary: 'List the role catalog',
          responses: { '200': { description: 'Every role.', ...json(z.object({ data: z.array(roleSchema) })) } },
        },
      },
    },
  });
}
