import { z } from 'zod';
import type { ZodOpenApiPathsObject, ZodOpenApiResponsesObject } from 'zod-openapi';

import { operatorDeactivateRequestSchema, operatorDeactivationReportSchema } from './routes/operator.js';
import {
  deactivatedMemberSchema,
  deactivationPreviewSchema,
  emptyRequestSchema,
  roleChangeRequestSchema,
} from './routes/member-changes.js';
import { errorSchema, memberSchema } from './schemas.js';

const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const failure = (description: string) => ({ description, ...json(errorSchema) });

const memberPath = z.object({
  accountId: z.string().meta({ description: 'Account id, for example `demo`.' }),
  environment: z.string().meta({ description: 'Environment name, for example `sandbox`.' }),
  userId: z.uuid().meta({ description: "The member's user id." }),
});
const idempotencyHeader = z.object({
  'Idempotency-Key': z.string().max(255).optional().meta({ description: 'Makes a retry return the first response instead of a 409.' }),
});

const managerFailures: ZodOpenApiResponsesObject = {
  '401': failure("Missing, unknown or revoked credential, or the caller's membership here was deactivated."),
  '404': failure('No such member in this environment.'),
};

const base = '/v1/accounts/{accountId}/environments/{environment}/users/{userId}';

/** The security scheme of the operator route, for `components.securitySchemes` next to `apiKey`. */
export const memberChangeSecuritySchemes = {
  operatorKey: { type: 'http', scheme: 'bearer', description: 'A platform operator key: `Authorization: Bearer lo_...`.' },
} as const;

/** OpenAPI paths of role changes, deactivation, reactivation and operator deactivation, for api/openapi.ts. */
export const memberChangePaths: ZodOpenApiPathsObject = {
  [`${base}/roles`]: {
    put: {
      summary: "Replace a member's roles",
      description:
        'Works for invited and active members; a pending invitation then grants the new roles when accepted. A role-change workflow applies the change and emails the member a notice; the response comes once the change is committed.',
      security: [{ apiKey: [] }],
      requestParams: { path: memberPath },
      requestBody: json(roleChangeRequestSchema),
      responses: {
        '200': { description: 'The member with the new roles.', ...json(memberSchema) },
        '400': failure('Empty, unknown or repeated role, or an unknown field.'),
        ...managerFailures,
        '403': failure('The caller may not manage users, or grants or removes `administrator` without being an administrator.'),
        '409': failure(
          '`last_administrator`: the change would leave the environment without an active administrator. `member_status_conflict`: the member is not invited or active.',
        ),
      },
    },
  },
  [`${base}/deactivation-preview`]: {
    get: {
      summary: 'Preview what a deactivation stops',
      security: [{ apiKey: [] }],
      requestParams: { path: memberPath },
      responses: {
        '200': { description: 'The counts the deactivation would report, and what would refuse it now.', ...json(deactivationPreviewSchema) },
        ...managerFailures,
        '403': failure('The caller may not manage users.'),
      },
    },
  },
  [`${base}/deactivate`]: {
    post: {
      summary: 'Deactivate a member',
      description:
        'For invited and active members. A pending invitation is revoked and its link stops working, the API keys of the person for this environment are revoked, and their sessions get 401 here from the next request. Roles are kept for a reactivation. The member gets a notice email.',
      security: [{ apiKey: [] }],
      requestParams: { path: memberPath, header: idempotencyHeader },
      requestBody: { required: false, ...json(emptyRequestSchema) },
      responses: {
        '200': { description: 'The deactivated member and what stopped.', ...json(deactivatedMemberSchema) },
        '400': failure('The body has fields; it must be empty.'),
        ...managerFailures,
        '403': failure('`self_deactivation`: nobody deactivates themselves. `forbidden`: only an administrator deactivates an administrator.'),
        '409': failure(
          '`last_administrator`, `member_status_conflict` (not invited or active), or `member_change_in_progress` (another deactivation or reactivation of this member is running).',
        ),
        '422': failure('`idempotency_key_reused`: the Idempotency-Key was used for a different request.'),
      },
    },
  },
  [`${base}/reactivate`]: {
    post: {
      summary: 'Reactivate a member',
      description:
        'A member who had accepted becomes `active` again with the roles they had. One who never accepted gets a new invitation with those roles, and a new email with a link.',
      security: [{ apiKey: [] }],
      requestParams: { path: memberPath, header: idempotencyHeader },
      requestBody: { required: false, ...json(emptyRequestSchema) },
      responses: {
        '200': { description: 'The member, `active` or `invited`.', ...json(memberSchema) },
        '400': failure('The body has fields; it must be empty.'),
        ...managerFailures,
        '403': failure('Only an administrator reactivates an administrator.'),
        '409': failure('`member_status_conflict` (not deactivated) or `member_change_in_progress`.'),
        '422': failure('`idempotency_key_reused`: the Idempotency-Key was used for a different request.'),
      },
    },
  },
  '/v1/operator/users/deactivate': {
    post: {
      summary: 'Deactivate a person in every account',
      description:
        'For platform support, with an operator key (`lo_...`). Deactivates every invited or active membership of the person and revokes all their sessions. A membership where the person is the last active administrator is skipped with reason `last_administrator`; make someone else an administrator there and call this again. The person gets one notice email listing what was deactivated.',
      security: [{ operatorKey: [] }],
      requestParams: { header: idempotencyHeader },
      requestBody: json(operatorDeactivateRequestSchema),
      responses: {
        '200': { description: 'One result per membership, and the number of sessions ended.', ...json(operatorDeactivationReportSchema) },
        '400': failure('Invalid body.'),
        '401': failure('Missing, unknown or revoked credential.'),
        '403': failure('The credential is not an operator key.'),
        '404': failure('No user has this email address.'),
        '409': failure('`member_change_in_progress`: an operator deactivation of this person is running.'),
        '422': failure('`idempotency_key_reused`: the Idempotency-Key was used for a different request.'),
      },
    },
  },
};
