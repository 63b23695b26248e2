import { Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { Knex } from 'knex';

import { HttpError } from '../api/errors.js';
import { InvitationWorkflows } from '../api/invitation-workflows.js';
import { revokeSessions } from '../api/sessions.js';
import { recordAuditEvent } from '../db/audit.js';
import { PermanentEmailError } from '../lib/email/index.js';
import { memberNoticeEmail, type MemberNoticeInput, type NoticePlace } from '../lib/email/templates-member-changes.js';
import { deriveKey } from '../lib/secrets.js';
import { cancelSsoOnboardingUpdate } from '../workflows/sso.js';
import type { ActivityDependencies } from './dependencies.js';
import { reject } from './support.js';

/** The actor of a change: a member of the environment, or a platform operator acting for support. */
export type MemberChangeActor = { type: 'user'; userId: string } | { type: 'operator'; operatorKeyId: string };

/** Failure types of member-change activities that no retry can fix; the API maps them to HTTP statuses. */
export const MemberChangeRejection = {
  memberNotFound: 'MemberNotFound',
  /** The membership's status does not allow the change, for example deactivating a revoked member. */
  statusConflict: 'MemberStatusConflict',
  lastAdministrator: 'LastAdministrator',
  selfDeactivation: 'SelfDeactivation',
  /** The actor lacks the role the change needs, checked again under the lock in case it just changed. */
  actorNotAuthorized: 'ActorNotAuthorized',
  unknownRole: 'UnknownRole',
  emailRejected: 'EmailRejected',
} as const;

/** Counts of what a deactivation stops, for the preview and for the deactivation itself. */
export interface DeactivationImpact {
  /** Open sessions of the person; they stop working in this environment. */
  sessions: number;
  /** API keys of the person for this environment; they are revoked. */
  apiKeys: number;
  /** Pending invitations of the membership; they are revoked and their links stop working. */
  pendingInvitations: number;
  /** SSO onboardings the member started. */
  ssoOnboardings: number;
}

export interface MemberTarget {
  accountId: string;
  environmentId: string;
  userId: string;
}

export interface ChangeRolesInput extends MemberTarget {
  roles: string[];
  actor: MemberChangeActor;
}

export interface RoleChangeResult {
  membershipId: string;
  status: 'invited' | 'active';
  /** Role keys before and after the change, sorted. */
  before: string[];
  after: string[];
  /** False when the membership already had exactly these roles; nothing was written. */
  changed: boolean;
}

export interface DeactivateInput extends MemberTarget {
  actor: MemberChangeActor;
  /** Free text for the audit event, such as a support ticket reference. */
  reason?: string;
}

export interface EndedInvitation {
  invitationId: string;
  workflowId: string;
  runId: string;
}

export interface DeactivationResult {
  membershipId: string;
  statusBefore: 'invited' | 'active';
  impact: DeactivationImpact;
  /** Invitations this deactivation revoked; the workflow then signals each invitation workflow. */
  endedInvitations: EndedInvitation[];
  /** Open SSO onboarding workflows the member started in the account; the workflow then cancels them. */
  ssoOnboardingWorkflowIds?: string[];
}

export interface ReactivateInput extends MemberTarget {
  actor: MemberChangeActor;
}

/**
 * `active`: the membership is active again. `invitation`: the person never accepted, so nothing was
 * changed yet and the next step invites them again.
 */
export interface ReactivationCheck {
  mode: 'active' | 'invitation';
  membershipId: string;
  roles: string[];
}

export interface ReinviteInput extends MemberTarget {
  environment: string;
  roles: string[];
  actor: MemberChangeActor;
}

export interface ReinviteResult {
  invitationId: string;
  invitationWorkflowId: string;
  expiresAt: string;
}

export interface MembershipToDeactivate {
  membershipId: string;
  accountId: string;
  environmentId: string;
  environment: string;
  status: 'invited' | 'active';
}

/** A notice email; the activity looks up the address, names and roles itself. */
export type NoticeRequest =
  | { kind: 'roles_changed'; membershipId: string; before: string[]; after: string[]; actor: MemberChangeActor }
  | { kind: 'deactivated'; membershipId: string; wasInvited: boolean; actor: MemberChangeActor }
  | { kind: 'reactivated'; membershipId: string; actor: MemberChangeActor }
  | { kind: 'operator_deactivated'; userId: string; membershipIds: string[] };

export interface SendNoticeInput {
  /** Names the workflow step; one email per step and workflow run, whatever the retries. */
  step: string;
  notice: NoticeRequest;
}

export interface EndSessionsInput {
  userId: string;
  operatorKeyId: string;
  reason?: string;
  /** Per-membership outcomes of the operator deactivation, for the audit event. */
  memberships: { membershipId: string; outcome: string }[];
}

const ADMINISTRATOR = 'administrator';
const MANAGER_ROLES = ['administrator', 'user_administrator'];
const FOREIGN_KEY_VIOLATION = '23503';

function currentRun(): { workflowId: string; runId: string } {
  const execution = Context.current().info.workflowExecution;
  if (!execution) {
    throw reject('NotInWorkflow', 'Member-change activities must run inside a member-change workflow.');
  }
  return { workflowId: execution.workflowId, runId: execution.runId };
}

function sorted(roles: Iterable<string>): string[] {
  return [...new Set(roles)].sort();
}

function actorColumns(actor: MemberChangeActor): { actorType: 'user' | 'operator'; actorUserId: string | null } {
  return actor.type === 'user' ? { actorType: 'user', actorUserId: actor.userId } : { actorType: 'operator', actorUserId: null };
}

/** Facts about the actor that the audit row's columns do not hold. */
function actorDetails(actor: MemberChangeActor): Record<string, string> {
  return actor.type === 'operator' ? { operatorKeyId: actor.operatorKeyId } : {};
}

/**
 * Serializes every change that can lower an environment's count of active administrators. FOR NO KEY
 * UPDATE conflicts with itself, so two such changes wait for each other and the second one counts what
 * the first committed. Unlike FOR UPDATE it leaves alone the KEY SHARE locks that foreign keys take,
 * so invitations, acceptances and audit writes in the same environment do not wait for it or deadlock
 * with it. Callers take it as the transaction's first lock, so that they never wait for it while
 * holding another.
 */
async function lockEnvironment(trx: Knex.Transaction, environmentId: string): Promise<void> {
  const environment = await trx('environments').where({ id: environmentId }).forNoKeyUpdate().first('id');
  if (!environment) {
    throw reject(MemberChangeRejection.memberNotFound, `Environment ${environmentId} does not exist.`);
  }
}

async function findMembership(trx: Knex.Transaction, target: MemberTarget, lock: boolean) {
  const query = trx('memberships').where({ environment_id: target.environmentId, user_id: target.userId });
  if (lock) {
    query.forUpdate();
  }
  const membership = await query.first();
  if (!membership) {
    throw reject(MemberChangeRejection.memberNotFound, `User ${target.userId} is not a member of this environment.`);
  }
  return membership;
}

async function rolesOf(trx: Knex | Knex.Transaction, membershipId: string): Promise<string[]> {
  return sorted(await trx('membership_roles').where({ membership_id: membershipId }).pluck('role_key'));
}

async function otherActiveAdministrators(trx: Knex.Transaction, environmentId: string, membershipId: string): Promise<number> {
  const [row] = await trx('memberships')
    .join('membership_roles', 'membership_roles.membership_id', 'memberships.id')
    .where({ 'memberships.environment_id': environmentId, 'memberships.status': 'active', 'membership_roles.role_key': ADMINISTRATOR })
    .whereNot('memberships.id', membershipId)
    .count({ count: '*' });
  return Number(row?.count ?? 0);
}

async function assertNotLastAdministrator(trx: Knex.Transaction, environmentId: string, membershipId: string, action: string): Promise<void> {
  if ((await otherActiveAdministrators(trx, environmentId, membershipId)) === 0) {
    throw reject(
      MemberChangeRejection.lastAdministrator,
      `This member is the last active administrator of the environment, so they cannot be ${action}. Make another member an administrator first.`,
    );
  }
}

/**
 * Checks again, under the environment lock, that the actor may make the change: an active member with
 * a user-managing role, and an administrator when the change grants, removes or touches the
 * administrator role. The API checked the same before starting the workflow, but the actor's own roles
 * may have changed since. Operators may make every change.
 */
async function assertActorMayManage(
  trx: Knex.Transaction,
  environmentId: string,
  actor: MemberChangeActor,
  touchesAdministrator: boolean,
): Promise<void> {
  if (actor.type === 'operator') {
    return;
  }
  const membership = await trx('memberships').where({ environment_id: environmentId, user_id: actor.userId, status: 'active' }).first('id');
  const roles = membership ? await rolesOf(trx, membership.id) : [];
  if (!roles.some((role) => MANAGER_ROLES.includes(role))) {
    throw reject(MemberChangeRejection.actorNotAuthorized, 'Managing users requires the administrator or user_administrator role.');
  }
  if (touchesAdministrator && !roles.includes(ADMINISTRATOR)) {
    throw reject(MemberChangeRejection.actorNotAuthorized, 'Only an administrator may grant, remove, deactivate or reactivate an administrator.');
  }
}

async function earlierAuditDetails(trx: Knex | Knex.Transaction, eventKey: string): Promise<Record<string, unknown> | undefined> {
  const event = await trx('audit_events').where({ event_key: eventKey }).first('details');
  return event?.details as Record<string, unknown> | undefined;
}

/**
 * Counts the open sessions of a person: not revoked, not past their absolute expiry and not idle for
 * longer than the idle timeout, the same conditions under which api/auth.ts accepts a session.
 */
async function openSessionCount(db: Knex | Knex.Transaction, userId: string, idleTimeoutMs: number): Promise<number> {
  const [row] = await db('sessions')
    .where({ user_id: userId })
    .whereNull('revoked_at')
    .where('expires_at', '>', db.fn.now())
    .whereRaw('last_used_at > now() - make_interval(secs => ?)', [Math.floor(idleTimeoutMs / 1000)])
    .count({ count: '*' });
  return Number(row?.count ?? 0);
}

/**
 * Returns the workflow ids of the open SSO onboardings the person started in the account of the
 * environment. Deactivation stops them, because the person no longer manages that account there.
 */
async function openSsoOnboardingsStartedBy(db: Knex | Knex.Transaction, userId: string, environmentId: string): Promise<string[]> {
  return db('sso_onboardings')
    .join('environments', 'environments.account_id', 'sso_onboardings.account_id')
    .where({ 'environments.id': environmentId, 'sso_onboardings.started_by_user_id': userId })
    .whereIn('sso_onboardings.status', ['pending', 'awaiting_approval'])
    .pluck('sso_onboardings.workflow_id');
}

/** Returns what deactivating the membership would stop, changing nothing; the preview route uses it. */
export async function previewDeactivationImpact(
  db: Knex,
  membership: { id: string; userId: string; environmentId: string },
  idleTimeoutMs: number,
): Promise<DeactivationImpact> {
  const [apiKeys] = await db('api_keys')
    .where({ user_id: membership.userId, environment_id: membership.environmentId })
    .whereNull('revoked_at')
    .count({ count: '*' });
  const [invitations] = await db('invitations').where({ membership_id: membership.id, status: 'pending' }).count({ count: '*' });
  return {
    sessions: await openSessionCount(db, membership.userId, idleTimeoutMs),
    apiKeys: Number(apiKeys?.count ?? 0),
    pendingInvitations: Number(invitations?.count ?? 0),
    ssoOnboardings: (await openSsoOnboardingsStartedBy(db, membership.userId, membership.environmentId)).length,
  };
}

/** Builds the member-change activities around their dependencies; the worker calls this once. */
export function createMemberChangeActivities({ config, db, email, temporal }: ActivityDependencies) {
  const invitations = new InvitationWorkflows(temporal, config, deriveKey(config.appSecret, 'workflow-id'));

  /**
   * Replaces a member's roles in one transaction with an audit event of the roles before and after.
   * Safe to retry: a second run of the same workflow run returns what the first stored.
   */
  async function changeMemberRoles(input: ChangeRolesInput): Promise<RoleChangeResult> {
    const { workflowId, runId } = currentRun();
    const eventKey = `membership.roles_changed:${runId}`;
    const after = sorted(input.roles);

    return db.transaction(async (trx) => {
      await lockEnvironment(trx, input.environmentId);
      const membership = await findMembership(trx, input, true);

      const earlier = await earlierAuditDetails(trx, eventKey);
      if (earlier) {
        return {
          membershipId: membership.id,
          status: earlier.status as RoleChangeResult['status'],
          before: earlier.before as string[],
          after: earlier.after as string[],
          changed: true,
        };
      }

      if (membership.status !== 'invited' && membership.status !== 'active') {
        throw reject(
          MemberChangeRejection.statusConflict,
          `The member is ${membership.status}; only invited and active members can have their roles changed.`,
        );
      }
      const before = await rolesOf(trx, membership.id);
      if (before.join(',') === after.join(',')) {
        return { membershipId: membership.id, status: membership.status, before, after, changed: false };
      }

      const hadAdministrator = before.includes(ADMINISTRATOR);
      const hasAdministrator = after.includes(ADMINISTRATOR);
      // An invited administrator is not counted, so removing that role cannot leave the environment without one.
      if (hadAdministrator && !hasAdministrator && membership.status === 'active') {
        await assertNotLastAdministrator(trx, input.environmentId, membership.id, 'removed from the administrator role');
      }
      await assertActorMayManage(trx, input.environmentId, input.actor, hadAdministrator !== hasAdministrator);

      await trx('membership_roles').where({ membership_id: membership.id }).delete();
      try {
        await trx('membership_roles').insert(after.map((role) => ({ membership_id: membership.id, role_key: role })));
      } catch (error) {
        if ((error as { code?: string }).code === FOREIGN_KEY_VIOLATION) {
          throw reject(MemberChangeRejection.unknownRole, 'One of the roles is not in the role catalog; see GET /v1/roles.');
        }
        throw error;
      }
      await trx('memberships').where({ id: membership.id }).update({ updated_at: trx.fn.now() });

      await recordAuditEvent(trx, {
        ...actorColumns(input.actor),
        action: 'membership.roles_changed',
        targetUserId: input.userId,
        accountId: input.accountId,
        environmentId: input.environmentId,
        workflowId,
        details: { membershipId: membership.id, status: membership.status, before, after, ...actorDetails(input.actor) },
        eventKey,
      });
      return { membershipId: membership.id, status: membership.status, before, after, changed: true };
    });
  }

  /**
   * Deactivates an invited or active membership in one transaction: its pending invitation is revoked
   * and its link cleared, the person's API keys for the environment are revoked, and an audit event
   * records what stopped. Sessions are counted but not revoked, because a session belongs to the person
   * rather than to one environment, and api/auth.ts rejects it here once the membership is deactivated.
   * Safe to retry: a second run of the same workflow run returns what the first stored.
   */
  async function deactivateMembership(input: DeactivateInput): Promise<DeactivationResult> {
    const { workflowId, runId } = currentRun();
    const eventKey = `membership.deactivated:${runId}`;

    return db.transaction(async (trx) => {
      await lockEnvironment(trx, input.environmentId);
      const found = await findMembership(trx, input, false);

      const earlier = await earlierAuditDetails(trx, eventKey);
      if (earlier) {
        const invitationIds = earlier.revokedInvitationIds as string[];
        const ended = await trx('invitations').whereIn('id', invitationIds).select('id', 'workflow_id', 'workflow_run_id');
        return {
          membershipId: found.id,
          statusBefore: earlier.statusBefore as DeactivationResult['statusBefore'],
          impact: earlier.impact as DeactivationImpact,
          endedInvitations: ended.map((row) => ({ invitationId: row.id, workflowId: row.workflow_id, runId: row.workflow_run_id })),
          ssoOnboardingWorkflowIds: (earlier.ssoOnboardingWorkflowIds as string[] | undefined) ?? [],
        };
      }

      // Invitation rows before the membership row: acceptance and expiry lock them in that order too.
      await trx('invitations').where({ membership_id: found.id, status: 'pending' }).forUpdate().select('id');
      const membership = await findMembership(trx, input, true);

      if (membership.status !== 'invited' && membership.status !== 'active') {
        throw reject(
          MemberChangeRejection.statusConflict,
          `The member is ${membership.status}; only invited and active members can be deactivated.`,
        );
      }
      if (input.actor.type === 'user' && input.actor.userId === input.userId) {
        throw reject(MemberChangeRejection.selfDeactivation, 'You cannot deactivate yourself; ask another administrator.');
      }
      const roles = await rolesOf(trx, membership.id);
      const isAdministrator = roles.includes(ADMINISTRATOR);
      if (isAdministrator && membership.status === 'active') {
        await assertNotLastAdministrator(trx, input.environmentId, membership.id, 'deactivated');
      }
      await assertActorMayManage(trx, input.environmentId, input.actor, isAdministrator);

      const sessions = await openSessionCount(trx, input.userId, config.session.idleTimeoutMs);
      const apiKeys = await trx('api_keys')
        .where({ user_id: input.userId, environment_id: input.environmentId })
        .whereNull('revoked_at')
        .update({ revoked_at: trx.fn.now() });
      const revoked: { id: string; workflow_id: string; workflow_run_id: string }[] = await trx('invitations')
        .where({ membership_id: membership.id, status: 'pending' })
        .update({ status: 'revoked', token_hash: null, ended_at: trx.fn.now() })
        .returning(['id', 'workflow_id', 'workflow_run_id']);
      const ssoOnboardingWorkflowIds = await openSsoOnboardingsStartedBy(trx, input.userId, input.environmentId);
      const impact: DeactivationImpact = {
        sessions,
        apiKeys,
        pendingInvitations: revoked.length,
        ssoOnboardings: ssoOnboardingWorkflowIds.length,
      };

      await trx('memberships')
        .where({ id: membership.id })
        .update({
          status: 'deactivated',
          status_before_deactivation: membership.status,
          deactivated_at: trx.fn.now(),
          deactivated_by_user_id: input.actor.type === 'user' ? input.actor.userId : null,
          updated_at: trx.fn.now(),
        });

      await recordAuditEvent(trx, {
        ...actorColumns(input.actor),
        action: 'membership.deactivated',
        targetUserId: input.userId,
        accountId: input.accountId,
        environmentId: input.environmentId,
        workflowId,
        details: {
          membershipId: membership.id,
          statusBefore: membership.status,
          roles,
          impact,
          revokedInvitationIds: revoked.map((row) => row.id),
          ssoOnboardingWorkflowIds,
          ...(input.reason ? { reason: input.reason } : {}),
          ...actorDetails(input.actor),
        },
        eventKey,
      });

      return {
        membershipId: membership.id,
        statusBefore: membership.status,
        impact,
        endedInvitations: revoked.map((row) => ({ invitationId: row.id, workflowId: row.workflow_id, runId: row.workflow_run_id })),
        ssoOnboardingWorkflowIds,
      };
    });
  }

  /**
   * Reactivates a deactivated membership that had been accepted: back to `active` with the roles it
   * kept, and an audit event. A membership that was never accepted is left as it is and returned with
   * mode `invitation`, for startReactivationInvitation. Safe to retry.
   */
  async function reactivateMembership(input: ReactivateInput): Promise<ReactivationCheck> {
    const { workflowId, runId } = currentRun();
    const eventKey = `membership.reactivated:${runId}`;

    return db.transaction(async (trx) => {
      const membership = await findMembership(trx, input, true);
      const roles = await rolesOf(trx, membership.id);
      if (await earlierAuditDetails(trx, eventKey)) {
        return { mode: 'active' as const, membershipId: membership.id, roles };
      }

      if (membership.status !== 'deactivated') {
        throw reject(MemberChangeRejection.statusConflict, `The member is ${membership.status}; only deactivated members can be reactivated.`);
      }
      await assertActorMayManage(trx, input.environmentId, input.actor, roles.includes(ADMINISTRATOR));

      if (membership.status_before_deactivation === 'invited' || membership.activated_at === null) {
        return { mode: 'invitation' as const, membershipId: membership.id, roles };
      }

      await trx('memberships').where({ id: membership.id }).update({
        status: 'active',
        status_before_deactivation: null,
        deactivated_at: null,
        deactivated_by_user_id: null,
        updated_at: trx.fn.now(),
      });
      await recordAuditEvent(trx, {
        ...actorColumns(input.actor),
        action: 'membership.reactivated',
        targetUserId: input.userId,
        accountId: input.accountId,
        environmentId: input.environmentId,
        workflowId,
        details: { membershipId: membership.id, to: 'active', roles, ...actorDetails(input.actor) },
        eventKey,
      });
      return { mode: 'active' as const, membershipId: membership.id, roles };
    });
  }

  /**
   * Invites a deactivated member who never accepted again, with the membership's roles, by starting an
   * invitation workflow with `reactivation: true`. Returns once that workflow has recorded the new
   * invitation, and then writes the reactivation's audit event. Safe to retry: a retry finds the
   * invitation the first attempt started.
   */
  async function startReactivationInvitation(input: ReinviteInput): Promise<ReinviteResult> {
    const { workflowId, runId } = currentRun();
    const user = await db('users').where({ id: input.userId }).first('email');
    const membership = await db('memberships').where({ environment_id: input.environmentId, user_id: input.userId }).first('id', 'status');
    if (!user || !membership) {
      throw reject(MemberChangeRejection.memberNotFound, `User ${input.userId} is not a member of this environment.`);
    }

    const pendingInvitation = async () =>
      db('invitations').where({ membership_id: membership.id, status: 'pending' }).orderBy('created_at', 'desc').first('id', 'workflow_id', 'expires_at');

    // Only this step turns the deactivated membership into an invitation; finding one means an earlier attempt got through.
    let invitation = membership.status === 'invited' ? await pendingInvitation() : undefined;
    if (!invitation) {
      if (membership.status !== 'deactivated') {
        throw reject(MemberChangeRejection.statusConflict, `The member became ${membership.status} before the new invitation was sent.`);
      }
      try {
        await invitations.start({
          accountId: input.accountId,
          environmentId: input.environmentId,
          environment: input.environment,
          email: user.email,
          roles: input.roles,
          invitedByUserId: input.actor.type === 'user' ? input.actor.userId : null,
          reactivation: true,
        });
      } catch (error) {
        // A start that went through on an earlier attempt makes this one fail with "pending"; the lookup below finds it.
        if (!(error instanceof HttpError && error.code === 'invitation_pending')) {
          throw error instanceof HttpError ? reject(MemberChangeRejection.statusConflict, error.message) : error;
        }
      }
      invitation = await pendingInvitation();
      if (!invitation) {
        // Retryable: the invitation workflow may still be recording the invitation.
        throw new Error(`No pending invitation for membership ${membership.id} after starting the invitation workflow.`);
      }
    }

    await recordAuditEvent(db, {
      ...actorColumns(input.actor),
      action: 'membership.reactivated',
      targetUserId: input.userId,
      accountId: input.accountId,
      environmentId: input.environmentId,
      workflowId,
      details: {
        membershipId: membership.id,
        to: 'invited',
        roles: sorted(input.roles),
        invitationId: invitation.id,
        invitationWorkflowId: invitation.workflow_id,
        ...actorDetails(input.actor),
      },
      eventKey: `membership.reactivated:${runId}`,
    });
    return { invitationId: invitation.id, invitationWorkflowId: invitation.workflow_id, expiresAt: new Date(invitation.expires_at).toISOString() };
  }

  /** Lists the person's invited and active memberships in every account and environment. */
  async function listMembershipsToDeactivate(input: { userId: string }): Promise<MembershipToDeactivate[]> {
    return db('memberships')
      .join('environments', 'environments.id', 'memberships.environment_id')
      .where('memberships.user_id', input.userId)
      .whereIn('memberships.status', ['invited', 'active'])
      .orderBy([{ column: 'memberships.account_id' }, { column: 'environments.name' }])
      .select(
        'memberships.id as membershipId',
        'memberships.account_id as accountId',
        'memberships.environment_id as environmentId',
        'environments.name as environment',
        'memberships.status as status',
      );
  }

  /**
   * Ends every session of the person, in every account, and records the operator deactivation's audit
   * event in the same transaction. Safe to retry: a second run returns the count the first stored.
   */
  async function endUserSessions(input: EndSessionsInput): Promise<{ sessionsEnded: number }> {
    const { workflowId, runId } = currentRun();
    const eventKey = `user.operator_deactivated:${runId}`;

    return db.transaction(async (trx) => {
      const earlier = await earlierAuditDetails(trx, eventKey);
      if (earlier) {
        return { sessionsEnded: earlier.sessionsEnded as number };
      }
      const sessionsEnded = await revokeSessions(trx, input.userId, 'operator_deactivation');
      await recordAuditEvent(trx, {
        actorType: 'operator',
        actorUserId: null,
        action: 'user.operator_deactivated',
        targetUserId: input.userId,
        accountId: null,
        environmentId: null,
        workflowId,
        details: {
          operatorKeyId: input.operatorKeyId,
          memberships: input.memberships,
          sessionsEnded,
          ...(input.reason ? { reason: input.reason } : {}),
        },
        eventKey,
      });
      return { sessionsEnded };
    });
  }

  async function describeActor(actor: MemberChangeActor): Promise<string | null> {
    if (actor.type === 'operator') {
      return 'Platform support';
    }
    const user = await db('users').where({ id: actor.userId }).first('email');
    return user?.email ?? null;
  }

  async function placeOf(membershipId: string): Promise<{ userId: string; status: string; place: NoticePlace }> {
    const row = await db('memberships')
      .join('environments', 'environments.id', 'memberships.environment_id')
      .join('accounts', 'accounts.id', 'memberships.account_id')
      .where('memberships.id', membershipId)
      .first('memberships.user_id as userId', 'memberships.status as status', 'accounts.name as accountName', 'environments.name as environment');
    if (!row) {
      throw reject(MemberChangeRejection.memberNotFound, `Membership ${membershipId} does not exist.`);
    }
    return { userId: row.userId, status: row.status, place: { accountName: row.accountName, environment: row.environment } };
  }

  async function roleNames(keys: string[]): Promise<string[]> {
    const rows: { key: string; name: string }[] = await db('roles').whereIn('key', keys).select('key', 'name');
    const names = new Map(rows.map((row) => [row.key, row.name]));
    return keys.map((key) => names.get(key) ?? key);
  }

  /** Builds the email for a notice request and returns it with the recipient's user id. */
  async function composeNotice(notice: NoticeRequest): Promise<{ userId: string; message: MemberNoticeInput }> {
    if (notice.kind === 'operator_deactivated') {
      const user = await db('users').where({ id: notice.userId }).first('email');
      const places = await Promise.all(notice.membershipIds.map(async (id) => (await placeOf(id)).place));
      return { userId: notice.userId, message: { kind: notice.kind, to: user.email, places } };
    }

    const { userId, status, place } = await placeOf(notice.membershipId);
    const user = await db('users').where({ id: userId }).first('email');
    const changedBy = await describeActor(notice.actor);
    switch (notice.kind) {
      case 'roles_changed':
        return {
          userId,
          message: {
            kind: notice.kind,
            to: user.email,
            place,
            before: await roleNames(notice.before),
            after: await roleNames(notice.after),
            invited: status === 'invited',
            changedBy,
          },
        };
      case 'deactivated':
        return { userId, message: { kind: notice.kind, to: user.email, place, wasInvited: notice.wasInvited, changedBy } };
      case 'reactivated': {
        const roles = await roleNames(await rolesOf(db, notice.membershipId));
        return { userId, message: { kind: notice.kind, to: user.email, place, roles, changedBy } };
      }
    }
  }

  /**
   * Sends one notice email for one workflow step. The first attempt stores the step as `sending`; a
   * retry after a successful send finds it `sent` and mails nothing. A crash between the provider's
   * response and that write sends the notice a second time, the same window the invitation emails have.
   */
  async function sendMemberNotice(input: SendNoticeInput): Promise<{ status: 'sent' | 'already_sent' }> {
    const { workflowId, runId } = currentRun();
    const noticeKey = `${workflowId}:${runId}:${input.step}`;
    if ((await db('member_notice_emails').where({ notice_key: noticeKey }).first('status'))?.status === 'sent') {
      return { status: 'already_sent' };
    }

    const { userId, message } = await composeNotice(input.notice);
    await db('member_notice_emails')
      .insert({ notice_key: noticeKey, user_id: userId, kind: input.notice.kind, status: 'sending' })
      .onConflict('notice_key')
      .ignore();
    const row = await db('member_notice_emails').where({ notice_key: noticeKey }).first('id');

    let messageId: string | null;
    try {
      ({ messageId } = await email.send(memberNoticeEmail(message)));
    } catch (error) {
      if (error instanceof PermanentEmailError) {
        throw reject(MemberChangeRejection.emailRejected, error.message);
      }
      throw error;
    }
    await db('member_notice_emails').where({ id: row.id }).update({ status: 'sent', sent_at: db.fn.now(), provider_message_id: messageId });
    // The activity logger adds the workflow id, activity and attempt to this line.
    log.info('Member notice sent', { kind: input.notice.kind, step: input.step, messageId });
    return { status: 'sent' };
  }

  /**
   * Cancels SSO onboardings through their workflows' cancel update. One that ended meanwhile, or was
   * already approved, is left as it is, so running this twice changes nothing more.
   */
  async function cancelSsoOnboardings(input: { workflowIds: string[]; actor: MemberChangeActor }): Promise<{ cancelled: number }> {
    let cancelled = 0;
    for (const workflowId of input.workflowIds) {
      try {
        const state = await temporal.workflow.getHandle(workflowId).executeUpdate(cancelSsoOnboardingUpdate, {
          args: [{ actor: { type: 'system', userId: null } }],
        });
        cancelled += state.phase === 'cancelled' ? 1 : 0;
      } catch (error) {
        if (error instanceof WorkflowUpdateFailedError || error instanceof WorkflowNotFoundError) {
          log.info('SSO onboarding not cancelled; it has ended or cannot be cancelled', { ssoWorkflowId: workflowId, error: String(error) });
          continue;
        }
        throw error;
      }
    }
    return { cancelled };
  }

  return {
    changeMemberRoles,
    deactivateMembership,
    cancelSsoOnboardings,
    reactivateMembership,
    startReactivationInvitation,
    listMembershipsToDeactivate,
    endUserSessions,
    sendMemberNotice,
  };
}

export type MemberChangeActivities = ReturnType<typeof createMemberChangeActivities>;
