import { z } from 'zod';

import { emailSchema } from '../lib/email-address.js';
import { MEMBER_STATUSES } from './members.js';

/**
 * Request and response shapes of the HTTP API. The routes validate requests with these schemas, and
 * api/openapi.ts builds the OpenAPI document from the same objects, so the two cannot drift apart.
 */

const MAX_ROLES = 50;

export const roleListSchema = z
  .array(z.string().min(1, 'must not contain empty role names').max(100))
  .min(1, 'must contain at least one role')
  .max(MAX_ROLES, `must contain at most ${MAX_ROLES} roles`)
  .refine((roles) => new Set(roles).size === roles.length, 'must not contain the same role twice')
  .meta({ description: 'Role keys from GET /v1/roles, each at most once.', example: ['customer_viewer', 'invoice_contributor'] });

export const inviteRequestSchema = z
  .strictObject({
    email: emailSchema.meta({ description: 'Address of the person to invite; at most 254 characters.', example: 'ada@example.com' }),
    roles: roleListSchema,
  })
  .meta({ id: 'InviteRequest' });

export const listMembersQuerySchema = z.strictObject({
  status: z.enum(MEMBER_STATUSES).optional().meta({ description: 'Only members with this status.' }),
  role: z.string().min(1).max(100).optional().meta({ description: 'Only members who have this role.' }),
  q: z.string().min(1).max(254).optional().meta({ description: 'Email prefix, compared case-insensitively.' }),
  limit: z.coerce.number().int('must be a whole number').min(1).max(200).default(50).meta({ description: 'Page size, 1 to 200.' }),
  cursor: z.string().max(1000).optional().meta({ description: 'The `nextCursor` of the previous page.' }),
});

export const acceptRequestSchema = z
  .strictObject({
    token: z.string().min(1, 'is required').max(200).meta({ description: 'The `token` parameter of the emailed link.' }),
    password: z
      .string()
      .max(1000)
      .optional()
      .meta({ description: '12 to 128 characters, not the email address. Omit it when the person already has a password.' }),
  })
  .meta({ id: 'AcceptInvitationRequest' });

const timestamp = z.iso.datetime();

export const memberSchema = z
  .object({
    id: z.uuid().meta({ description: 'The user id, used in member paths.' }),
    email: z.string(),
    status: z.enum(MEMBER_STATUSES),
    roles: z.array(z.string()),
    membershipId: z.uuid(),
    invitation: z
      .object({
        id: z.uuid(),
        status: z.enum(['pending', 'accepted', 'expired', 'revoked']),
        expiresAt: timestamp,
        resendCount: z.number().int(),
        lastSentAt: timestamp.nullable(),
        workflowId: z.string().meta({ description: 'The invitation workflow, as listed in the Temporal Web UI.' }),
        lastEmail: z
          .object({
            step: z.string().meta({ description: 'The workflow step that sent it: `initial`, `reminder` or `resend-<n>`.' }),
            status: z.enum(['sending', 'sent', 'rejected']),
            sentAt: timestamp.nullable(),
            rejectedAt: timestamp.nullable(),
            rejectionReason: z
              .string()
              .nullable()
              .meta({ description: 'Why the email provider rejected the message for good; null unless `status` is `rejected`.' }),
          })
          .nullable()
          .meta({ description: 'The latest email of this invitation, if one was prepared.' }),
      })
      .nullable()
      .meta({ description: 'The latest invitation to this environment, if any.' }),
    invitedAt: timestamp.nullable(),
    activatedAt: timestamp.nullable(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'Member' });

export const memberPageSchema = z
  .object({ data: z.array(memberSchema), nextCursor: z.string().nullable() })
  .meta({ id: 'MemberPage' });

export const acceptedSchema = z
  .object({ status: z.literal('active'), userId: z.uuid(), email: z.string(), accountId: z.string(), environment: z.string() })
  .meta({ id: 'AcceptedInvitation' });

export const roleSchema = z
  .object({ key: z.string(), name: z.string(), description: z.string(), resource: z.string().nullable() })
  .meta({ id: 'Role' });

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ description: 'Stable, machine-readable error code.', example: 'validation_failed' }),
      message: z.string(),
      details: z
        .unknown()
        .meta({ description: 'For validation_failed, a list of `{ field, rule }`; otherwise null or extra facts.' }),
    }),
  })
  .meta({ id: 'Error' });

/** The optional `Idempotency-Key` request header of creating POSTs, for the OpenAPI document (see api/idempotency.ts). */
export const idempotencyHeader = z.object({
  'Idempotency-Key': z
    .string()
    .max(255)
    .optional()
    .meta({ description: 'Makes a retry with the same key and body return the first response; kept for 24 hours per caller.' }),
});
