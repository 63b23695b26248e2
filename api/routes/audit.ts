import { Router } from 'express';
import type { Knex } from 'knex';
import { z } from 'zod';

import { requireUserManager } from '../auth.js';
import { parseOrThrow, validationError } from '../errors.js';

export const auditQuerySchema = z.strictObject({
  actor: z.uuid('must be a user id').optional().meta({ description: 'Only events by this user.' }),
  target: z.uuid('must be a user id').optional().meta({ description: 'Only events about this user.' }),
  action: z
    .string()
    .regex(/^[a-z_.]{1,100}$/, 'must be an action such as invitation.created, or a prefix such as invitation.')
    .optional()
    .meta({ description: 'An action, or a prefix ending in a dot, such as `invitation.`.' }),
  from: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 date-time' }).optional().meta({ description: 'Events at or after this time.' }),
  to: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 date-time' }).optional().meta({ description: 'Events before this time.' }),
  limit: z.coerce.number().int('must be a whole number').min(1).max(200).default(50),
  cursor: z.string().regex(/^\d{1,19}$/, 'is not a cursor returned by this endpoint').optional(),
});

export const auditEventSchema = z
  .object({
    id: z.string(),
    occurredAt: z.iso.datetime(),
    actorType: z.enum(['user', 'system', 'invitee', 'operator']),
    actorUserId: z.uuid().nullable(),
    action: z.string(),
    targetUserId: z.uuid().nullable(),
    workflowId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'AuditEvent' });

/** `GET .../audit-events`: the environment's audit log, newest first, a page at a time. */
export function auditRouter(db: Knex): Router {
  const router = Router({ mergeParams: true });
  router.use(requireUserManager);

  router.get('/', async (request, response) => {
    const query = parseOrThrow(auditQuerySchema, request.query, 'query');
    if (query.from && query.to && Date.parse(query.from) >= Date.parse(query.to)) {
      throw validationError([{ field: 'query.to', rule: 'must be later than query.from' }]);
    }

    const rows = db('audit_events')
      .where({ environment_id: request.principal!.environmentId })
      .orderBy('id', 'desc')
      .limit(query.limit + 1);
    if (query.actor) {
      rows.where({ actor_user_id: query.actor });
    }
    if (query.target) {
      rows.where({ target_user_id: query.target });
    }
    if (query.action?.endsWith('.')) {
      rows.where('action', 'like', `${query.action.replace(/_/g, '\\_')}%`);
    } else if (query.action) {
      rows.where({ action: query.action });
    }
    if (query.from) {
      rows.where('occurred_at', '>=', query.from);
    }
    if (query.to) {
      rows.where('occurred_at', '<', query.to);
    }
    if (query.cursor) {
      rows.where('id', '<', query.cursor);
    }

    const found = await rows;
    const page = found.slice(0, query.limit);
    response.json({
      data: page.map((row) => ({
        id: row.id,
        occurredAt: new Date(row.occurred_at).toISOString(),
        actorType: row.actor_type,
        actorUserId: row.actor_user_id,
        action: row.action,
        targetUserId: row.target_user_id,
        workflowId: row.workflow_id,
        details: row.details,
      })),
      nextCursor: found.length > query.limit ? page.at(-1)!.id : null,
    });
  });

  return router;
}
