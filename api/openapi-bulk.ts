import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';

import {
  MAX_BATCH_ROWS,
  batchAcceptedSchema,
  batchQuerySchema,
  batchRequestSchema,
  batchSchema,
  groupInvitationSchema,
  groupInviteRequestSchema,
} from './routes/bulk.js';
import { errorSchema } from './schemas.js';

const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const failure = (description: string) => ({ description, ...json(errorSchema) });

const accountPath = z.object({ accountId: z.string().meta({ description: 'Account id, for example `demo`.' }) });
const environmentPath = accountPath.extend({
  environment: z.string().meta({ description: 'Environment name, for example `sandbox`.' }),
});
const idempotencyHeader = z.object({ 'Idempotency-Key': z.string().max(255).optional() });

const csvBody = z.string().meta({
  description: `A header line \`email,roles\`, then one person per line, at most ${MAX_BATCH_ROWS}. Roles are separated by \`;\`. Fields may be quoted.`,
  example: 'email,roles\nada@example.com,customer_viewer;invoice_contributor\ngrace@example.com,customer_viewer\n',
});

/** OpenAPI paths of bulk onboarding and invitations to several environments, in zod-openapi's format. */
export const bulkOpenApiPaths: ZodOpenApiPathsObject = {
  '/v1/accounts/{accountId}/users': {
    post: {
      summary: 'Invite a person to several environments',
      description:
        'Creates one invitation per environment, each its own invitation workflow with the id a single invite would have, so resend and revoke work per environment. ' +
        'The person gets one email with a link per environment. All or nothing: when any environment conflicts, nothing is kept in any of them. ' +
        'The caller must be an administrator or user administrator in every listed environment, and an administrator where it grants `administrator`. ' +
        'An API key works in its own environment only, so a list of several environments needs a session token.',
      security: [{ apiKey: [] }],
      requestParams: { path: accountPath, header: idempotencyHeader },
      requestBody: json(groupInviteRequestSchema),
      responses: {
        '202': { description: 'Every invitation is recorded; the email goes out right after.', ...json(groupInvitationSchema) },
        '400': failure('Invalid body, an unknown role, an unknown or repeated environment; `details` lists each field and rule.'),
        '401': failure('Missing, unknown or revoked credential, or an ended session.'),
        '403': failure('No access to the account, an API key with several environments, or a missing role in a listed environment.'),
        '409': failure(
          'Already a member, deactivated or already invited in a listed environment (`details` names it), another invitation group for this person still running, or the Idempotency-Key is in use.',
        ),
        '422': failure('The Idempotency-Key was used for a different request.'),
      },
    },
  },
  '/v1/accounts/{accountId}/environments/{environment}/users:batch': {
    post: {
      summary: 'Invite many people at once',
      description:
        'Stores the rows and starts a batch workflow, which starts one invitation workflow per valid row, BATCH_CONCURRENCY at a time. ' +
        'A row with a bad address, an empty, unknown or repeated role, an address already in an earlier row, or `administrator` sent by a user administrator is stored as `invalid` with its reason at once; the other rows go ahead. ' +
        'Follow the results at the `Location` header. An `Idempotency-Key` header makes a resubmission return the first batch instead of starting another.',
      security: [{ apiKey: [] }],
      requestParams: { path: environmentPath, header: idempotencyHeader },
      requestBody: {
        content: {
          'application/json': { schema: batchRequestSchema },
          'text/csv': { schema: csvBody },
        },
      },
      responses: {
        '202': { description: 'The batch is stored and its workflow started.', ...json(batchAcceptedSchema) },
        '400': failure('Malformed body, invalid CSV or a wrong CSV header.'),
        '401': failure('Missing, unknown or revoked credential.'),
        '403': failure('The credential is for another account or environment, or its owner may not manage users.'),
        '409': failure('The Idempotency-Key is in use by a request still running.'),
        '413': failure(`More than ${MAX_BATCH_ROWS} rows, or a body over the size limit.`),
        '415': failure('A body that is neither application/json nor text/csv.'),
        '422': failure('The Idempotency-Key was used for a different request.'),
      },
    },
  },
  '/v1/accounts/{accountId}/environments/{environment}/batches/{batchId}': {
    get: {
      summary: 'Get a batch and its row results',
      security: [{ apiKey: [] }],
      requestParams: {
        path: environmentPath.extend({ batchId: z.uuid().meta({ description: 'The `batchId` of the submission.' }) }),
        query: batchQuerySchema,
      },
      responses: {
        '200': {
          description:
            'The batch with counts per row status and every row in order. Rows start `queued` (or `invalid`) and end `invited`, `already_member` (active, deactivated or already invited) or `failed`.',
          ...json(batchSchema),
        },
        '400': failure('Invalid query parameter.'),
        '401': failure('Missing, unknown or revoked credential.'),
        '403': failure('The credential is for another account or environment, or its owner may not manage users.'),
        '404': failure('No such batch in this environment.'),
      },
    },
  },
};
