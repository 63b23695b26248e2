import { randomUUID } from 'node:crypto';

import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure, type UpdateDefinition, type Workflow } from '@temporalio/common';
import { Router } from 'express';
import type { Knex } from 'knex';
import { z } from 'zod';

import { MemberChangeRejection, previewDeactivationImpact, type MemberChangeActor } from '../../activities/member-changes.js';
import type { Config } from '../../lib/config.js';
import { lifecycleSearchAttributes, type LifecycleSearchAttributes } from '../../workflows/search-attributes.js';
import { summarizeRoles } from '../../workflows/visibility.js';
import {
  deactivationAppliedUpdate,
  deactivationWorkflow,
  deactivationWorkflowId,
  operatorDeactivationReportUpdate,
  operatorDeactivationWorkflow,
  operatorDeactivationWorkflowId,
  reactivationAppliedUpdate,
  reactivationWorkflow,
  reactivationWorkflowId,
  roleChangeAppliedUpdate,
  roleChangeWorkflow,
  roleChangeWorkflowId,
  type OperatorDeactivationWorkflowInput,
} from '../../workflows/member-changes.js';
import { isAdministrator, requireUserManager } from '../auth.js';
import type { Principal } from '../context.js';
import { HttpError, conflict, parseOrThrow, validationError } from '../errors.js';
import { withIdempotency } from '../idempotency.js';
import { assertUserId, findMemberOrThrow } from '../members.js';
import { memberSchema, roleListSchema } from '../schemas.js';
import type { RouterDependencies } from './dependencies.js';

const ADMINISTRATOR = 'administrator';

export const roleChangeRequestSchema = z.strictObject({ roles: roleListSchema }).meta({ id: 'RoleChangeRequest' });

/** Deactivation and reactivation take no body; an empty JSON object is accepted too. */
export const emptyRequestSchema = z.strictObject({}).meta({ id: 'EmptyRequest' });

export const deactivationImpactSchema = z
  .object({
    sessions: z.number().int().meta({ description: 'Open sessions of the person; they stop working in this environment at once.' }),
    apiKeys: z.number().int().meta({ description: 'API keys of the person for this environment; they are revoked.' }),
    pendingInvitations: z.number().int().meta({ description: 'Pending invitations; they are revoked and their links stop working.' }),
    ssoOnboardings: z.number().int().meta({ description: 'Open SSO onboardings the member started in the account; deactivation cancels them.' }),
  })
  .meta({ id: 'DeactivationImpact' });

export const deactivationPreviewSchema = z
  .object({
    userId: z.uuid(),
    membershipId: z.uuid(),
    status: memberSchema.shape.status,
    impact: deactivationImpactSchema,
    blockers: z.array(z.enum(['self', 'administrator_required', 'last_administrator', 'not_deactivatable'])).meta({
      description:
        'Reasons a deactivation by the caller would be rejected now: `self`, `administrator_required` (the member is an administrator and the caller is not), `last_administrator`, `not_deactivatable` (the member is not invited or active). Empty when it would go through.',
    }),
  })
  .meta({ id: 'DeactivationPreview' });

export const deactivatedMemberSchema = memberSchema
  .extend({
    deactivation: z.object({
      workflowId: z.string().meta({ description: 'The deactivation workflow, as listed in the Temporal Web UI.' }),
      impact: deactivationImpactSchema,
    }),
  })
  .meta({ id: 'DeactivatedMember' });

/** Maps what member-change workflows reject to the API's statuses. */
function toHttpError(error: unknown): HttpError | undefined {
  if (error instanceof WorkflowExecutionAlreadyStartedError) {
    return conflict('member_change_in_progress', 'Another change of this member is in progress; retry once it has finished.');
  }
  if (!(error instanceof WorkflowUpdateFailedError) || !(error.cause instanceof ApplicationFailure)) {
    return undefined;
  }

  const failure = error.cause;
  switch (failure.type) {
    case MemberChangeRejection.memberNotFound:
      return new HttpError(404, 'not_found', failure.message);
    case MemberChangeRejection.statusConflict:
      return conflict('member_status_conflict', failure.message);
    case MemberChangeRejection.lastAdministrator:
      return conflict('last_administrator', failure.message);
    case MemberChangeRejection.selfDeactivation:
      return new HttpError(403, 'self_deactivation', failure.message);
    case MemberChangeRejection.actorNotAuthorized:
      return new HttpError(403, 'forbidden', failure.message);
    case MemberChangeRejection.unknownRole:
      return validationError([{ field: 'body.roles', rule: 'must contain only roles from GET /v1/roles' }]);
    default:
      return undefined;
  }
}

/**
 * Starts member-change workflows with Update-with-Start and waits until the change is committed. The
 * notice email goes out afterwards in the same workflow, so the response does not wait for it.
 */
export class MemberChangeWorkflows {
  constructor(
    private readonly temporal: Client,
    private readonly config: Config,
  ) {}

  /**
   * Role changes may overlap, because the database serializes them; each gets its own id from a random
   * request id. Deactivations and reactivations have one id per member and the id conflict policy FAIL,
   * so a second one while the first runs gets 409; ALLOW_DUPLICATE lets a new one start after it closes.
   */
  private startOptions(workflowId: string, summary: string, searchAttributes: LifecycleSearchAttributes) {
    return {
      workflowId,
      taskQueue: this.config.temporal.taskQueue,
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: summary,
      typedSearchAttributes: lifecycleSearchAttributes(searchAttributes),
    } as const;
  }

  private async run<W extends Workflow, R>(startWorkflowOperation: WithStartWorkflowOperation<W>, update: UpdateDefinition<R, []>): Promise<R> {
    try {
      return await this.temporal.workflow.executeUpdateWithStart(update, { startWorkflowOperation });
    } catch (error) {
      throw toHttpError(error) ?? error;
    }
  }

  async changeRoles(principal: Principal, userId: string, roles: string[]) {
    const workflowId = roleChangeWorkflowId(principal.accountId, principal.environment, userId, randomUUID());
    const operation = new WithStartWorkflowOperation(roleChangeWorkflow, {
      ...this.startOptions(workflowId, `Role change in ${principal.accountId}/${principal.environment}: ${summarizeRoles(roles)}`, {
        kind: 'role-change',
        ...place(principal),
      }),
      args: [{ ...target(principal, userId), roles, actor: actorOf(principal) }],
    });
    return { workflowId, result: await this.run(operation, roleChangeAppliedUpdate) };
  }

  async deactivate(principal: Principal, userId: string) {
    const workflowId = deactivationWorkflowId(principal.accountId, principal.environment, userId);
    const operation = new WithStartWorkflowOperation(deactivationWorkflow, {
      ...this.startOptions(workflowId, `Deactivation in ${principal.accountId}/${principal.environment}`, {
        kind: 'deactivation',
        ...place(principal),
      }),
      args: [{ ...target(principal, userId), actor: actorOf(principal) }],
    });
    return { workflowId, result: await this.run(operation, deactivationAppliedUpdate) };
  }

  async reactivate(principal: Principal, userId: string) {
    const workflowId = reactivationWorkflowId(principal.accountId, principal.environment, userId);
    const operation = new WithStartWorkflowOperation(reactivationWorkflow, {
      ...this.startOptions(workflowId, `Reactivation in ${principal.accountId}/${principal.environment}`, {
        kind: 'reactivation',
        ...place(principal),
      }),
      args: [{ ...target(principal, userId), actor: actorOf(principal) }],
    });
    return { workflowId, result: await this.run(operation, reactivationAppliedUpdate) };
  }

  async deactivateEverywhere(input: OperatorDeactivationWorkflowInput) {
    const workflowId = operatorDeactivationWorkflowId(input.userId);
    const operation = new WithStartWorkflowOperation(operatorDeactivationWorkflow, {
      ...this.startOptions(workflowId, 'Operator deactivation in every account', { kind: 'operator-deactivation' }),
      args: [input],
    });
    return { workflowId, report: await this.run(operation, operatorDeactivationReportUpdate) };
  }
}

function place(principal: Principal) {
  return { accountId: principal.accountId, environment: principal.environment };
}

function target(principal: Principal, userId: string) {
  return { accountId: principal.accountId, environmentId: principal.environmentId, environment: principal.environment, userId };
}

function actorOf(principal: Principal): MemberChangeActor {
  return { type: 'user', userId: principal.userId };
}

/** Checks role names against the catalog; 400 names the unknown ones. */
async function assertRolesExist(db: Knex, roles: string[]): Promise<void> {
  const known = new Set(await db('roles').whereIn('key', roles).pluck('key'));
  const unknown = roles.filter((role) => !known.has(role));
  if (unknown.length > 0) {
    throw validationError(
      unknown.map((role) => ({ field: `body.roles[${roles.indexOf(role)}]`, rule: `is not a known role: "${role}"; see GET /v1/roles` })),
    );
  }
}


function forbidden(message: string): HttpError {
  return new HttpError(403, 'forbidden', message);
}

/** Role changes, deactivation and reactivation of one member, under `.../users/:userId`. */
export function memberChangesRouter({ db, temporal, config }: RouterDependencies): Router {
  const router = Router({ mergeParams: true });
  const workflows = new MemberChangeWorkflows(temporal, config);
  // app.ts runs requireUserManager before this router already; repeating it keeps the router safe on its own.
  router.use(requireUserManager);


  router.put('/:userId/roles', async (request, response) => {
    const principal = request.principal!;
    assertUserId(request.params.userId as string);
    const body = parseOrThrow(roleChangeRequestSchema, request.body, 'body');
    await assertRolesExist(db, body.roles);
    const member = await findMemberOrThrow(db, principal.environmentId, request.params.userId as string);

    if (member.status !== 'invited' && member.status !== 'active') {
      throw conflict('member_status_conflict', `The member is ${member.status}; only invited and active members can have their roles changed.`);
    }
    if (member.roles.includes(ADMINISTRATOR) !== body.roles.includes(ADMINISTRATOR) && !isAdministrator(principal)) {
      throw forbidden('Only an administrator may grant or remove the administrator role.');
    }

    const { workflowId, result } = await workflows.changeRoles(principal, member.id, body.roles);
    request.log.info({ workflowId, userId: member.id, changed: result.changed }, 'member roles changed');
    response.json(await findMemberOrThrow(db, principal.environmentId, member.id));
  });

  router.get('/:userId/deactivation-preview', async (request, response) => {
    const principal = request.principal!;
    const member = await findMemberOrThrow(db, principal.environmentId, request.params.userId as string);
    const impact = await previewDeactivationImpact(
      db,
      { id: member.membershipId, userId: member.id, environmentId: principal.environmentId },
      config.session.idleTimeoutMs,
    );

    const blockers: z.infer<typeof deactivationPreviewSchema>['blockers'] = [];
    if (member.id === principal.userId) {
      blockers.push('self');
    }
    if (member.roles.includes(ADMINISTRATOR) && !isAdministrator(principal)) {
      blockers.push('administrator_required');
    }
    if (member.status === 'active' && member.roles.includes(ADMINISTRATOR) && (await otherActiveAdministrators(db, principal.environmentId, member.membershipId)) === 0) {
      blockers.push('last_administrator');
    }
    if (member.status !== 'invited' && member.status !== 'active') {
      blockers.push('not_deactivatable');
    }
    response.json({ userId: member.id, membershipId: member.membershipId, status: member.status, impact, blockers });
  });

  router.post('/:userId/deactivate', async (request, response) => {
    const principal = request.principal!;
    const member = await findMemberOrThrow(db, principal.environmentId, request.params.userId as string);
    parseOrThrow(emptyRequestSchema, request.body ?? {}, 'body');

    if (member.id === principal.userId) {
      throw new HttpError(403, 'self_deactivation', 'You cannot deactivate yourself; ask another administrator.');
    }
    if (member.roles.includes(ADMINISTRATOR) && !isAdministrator(principal)) {
      throw forbidden('Only an administrator may deactivate an administrator.');
    }

    // The status check is inside, so that a retry with the same Idempotency-Key gets the first response, not 409.
    const result = await withIdempotency(db, request, async () => {
      if (member.status !== 'invited' && member.status !== 'active') {
        throw conflict('member_status_conflict', `The member is ${member.status}; only invited and active members can be deactivated.`);
      }
      const { workflowId, result: deactivated } = await workflows.deactivate(principal, member.id);
      request.log.info({ workflowId, userId: member.id, impact: deactivated.impact }, 'member deactivated');
      const after = await findMemberOrThrow(db, principal.environmentId, member.id);
      return { status: 200, body: { ...after, deactivation: { workflowId, impact: deactivated.impact } } };
    });
    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  router.post('/:userId/reactivate', async (request, response) => {
    const principal = request.principal!;
    const member = await findMemberOrThrow(db, principal.environmentId, request.params.userId as string);
    parseOrThrow(emptyRequestSchema, request.body ?? {}, 'body');

    if (member.roles.includes(ADMINISTRATOR) && !isAdministrator(principal)) {
      throw forbidden('Only an administrator may reactivate an administrator.');
    }

    const result = await withIdempotency(db, request, async () => {
      if (member.status !== 'deactivated') {
        throw conflict('member_status_conflict', `The member is ${member.status}; only deactivated members can be reactivated.`);
      }
      const { workflowId, result: reactivated } = await workflows.reactivate(principal, member.id);
      request.log.info({ workflowId, userId: member.id, mode: reactivated.mode }, 'member reactivated');
      return { status: 200, body: await findMemberOrThrow(db, principal.environmentId, member.id) };
    });
    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  return router;
}

async function otherActiveAdministrators(db: Knex, environmentId: string, membershipId: string): Promise<number> {
  const [row] = await db('memberships')
    .join('membership_roles', 'membership_roles.membership_id', 'memberships.id')
    .where({ 'memberships.environment_id': environmentId, 'memberships.status': 'active', 'membership_roles.role_key': ADMINISTRATOR })
    .whereNot('memberships.id', membershipId)
    .count({ count: '*' });
  return Number(row?.count ?? 0);
}
