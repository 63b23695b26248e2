import { Router } from 'express';
import { z } from 'zod';

import { emailSchema, normalizeEmail } from '../../lib/email-address.js';
import { authenticate, requireOperator } from '../auth.js';
import type { Caller } from '../context.js';
import { notFound, parseOrThrow } from '../errors.js';
import { withIdempotency } from '../idempotency.js';
import type { RouterDependencies } from './dependencies.js';
import { MemberChangeWorkflows, deactivationImpactSchema } from './member-changes.js';

export const operatorDeactivateRequestSchema = z
  .strictObject({
    email: emailSchema.meta({ description: 'Address of the person to deactivate everywhere.', example: 'ada@example.com' }),
    reason: z
      .string()
      .trim()
      .min(1, 'must not be empty')
      .max(500, 'must be at most 500 characters')
      .optional()
      .meta({ description: 'Free text for the audit events, such as a support ticket reference. Never put secrets here.' }),
  })
  .meta({ id: 'OperatorDeactivateRequest' });

const membershipResultSchema = z
  .object({
    membershipId: z.uuid(),
    accountId: z.string(),
    environment: z.string(),
    statusBefore: z.enum(['invited', 'active']),
    outcome: z.enum(['deactivated', 'skipped', 'failed']),
    impact: deactivationImpactSchema.optional().meta({ description: 'What stopped, when `outcome` is `deactivated`.' }),
    reason: z
      .enum(['last_administrator', 'not_deactivatable', 'change_in_progress'])
      .optional()
      .meta({ description: 'Why the membership was left as it is, when `outcome` is `skipped`.' }),
    message: z.string().optional(),
  })
  .meta({ id: 'OperatorMembershipResult' });

export const operatorDeactivationReportSchema = z
  .object({
    userId: z.uuid(),
    email: z.string(),
    workflowId: z.string().meta({ description: 'The operator deactivation workflow, as listed in the Temporal Web UI.' }),
    memberships: z.array(membershipResultSchema).meta({ description: 'One entry per membership that was invited or active.' }),
    sessionsEnded: z.number().int().meta({ description: 'Open sessions of the person that were revoked, in every account.' }),
  })
  .meta({ id: 'OperatorDeactivationReport' });

/** Platform operator routes under `/v1/operator`, for operator keys only. */
export function operatorRouter({ db, config, temporal }: RouterDependencies): Router {
  const router = Router();
  const workflows = new MemberChangeWorkflows(temporal, config);
  router.use(authenticate(db, config), requireOperator);

  router.post('/users/deactivate', async (request, response) => {
    // requireOperator has let only operator keys through.
    const { operatorKeyId } = request.caller as Extract<Caller, { kind: 'operator' }>;
    const body = parseOrThrow(operatorDeactivateRequestSchema, request.body, 'body');
    const user = await db('users').where({ email_normalized: normalizeEmail(body.email) }).first('id', 'email');
    if (!user) {
      throw notFound(`A user with the email address ${JSON.stringify(body.email)}`);
    }

    const result = await withIdempotency(db, request, async () => {
      const { workflowId, report } = await workflows.deactivateEverywhere({
        userId: user.id,
        operatorKeyId,
        ...(body.reason ? { reason: body.reason } : {}),
      });
      request.log.info(
        { workflowId, userId: user.id, memberships: report.memberships.length, sessionsEnded: report.sessionsEnded },
        'operator deactivated a user',
      );
      return { status: 200, body: { userId: user.id, email: user.email, workflowId, memberships: report.memberships, sessionsEnded: report.sessionsEnded } };
    });
    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  return router;
}
