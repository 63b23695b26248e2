import { Router } from 'express';
import type { Knex } from 'knex';

import { normalizeEmail } from '../../lib/email-address.js';
import { isAdministrator, requireUserManager } from '../auth.js';
import { HttpError, conflict, parseOrThrow, validationError } from '../errors.js';
import { withIdempotency } from '../idempotency.js';
import type { InvitationWorkflows } from '../invitation-workflows.js';
import {
  decodeCursor,
  findMemberOrThrow,
  getMemberByMembershipId,
  listMembers,
  type MemberView,
} from '../members.js';
import { inviteRequestSchema, listMembersQuerySchema } from '../schemas.js';

/** Checks role names against the catalog; 400 names the unknown ones. */
async function assertRolesExist(db: Knex, roles: string[]): Promise<void> {
  const known = new Set(await db('roles').whereIn('key', roles).pluck('key'));
  const unknown = roles.filter((role) => !known.has(role));
  if (unknown.length > 0) {
    throw validationError(
      unknown.map((role) => ({ field: `body.roles.${roles.indexOf(role)}`, rule: `is not a known role: "${role}"; see GET /v1/roles` })),
    );
  }
}


export function usersRouter(db: Knex, invitations: InvitationWorkflows): Router {
  const router = Router({ mergeParams: true });
  router.use(requireUserManager);

  router.post('/', async (request, response) => {
    const principal = request.principal!;
    const body = parseOrThrow(inviteRequestSchema, request.body, 'body');
    await assertRolesExist(db, body.roles);
    if (body.roles.includes('administrator') && !isAdministrator(principal)) {
      throw new HttpError(403, 'forbidden', 'Only an administrator may invite someone as an administrator.');
    }

    const result = await withIdempotency(db, request, async () => {
      // Rejects the common conflicts early. When two requests race, the workflow's own checks
      // and the database constraints decide.
      const existing = await db('memberships')
        .join('users', 'users.id', 'memberships.user_id')
        .where({ 'users.email_normalized': normalizeEmail(body.email), 'memberships.environment_id': principal.environmentId })
        .first('memberships.status');
      if (existing?.status === 'active') {
        throw conflict('already_member', 'This person is already an active member of this environment.');
      }
      if (existing?.status === 'deactivated') {
        throw conflict('member_deactivated', 'This person is a deactivated member of this environment; reactivate them instead.');
      }

      const { workflowId, state } = await invitations.start({
        accountId: principal.accountId,
        environmentId: principal.environmentId,
        environment: principal.environment,
        email: body.email,
        roles: body.roles,
        invitedByUserId: principal.userId,
      });
      request.log.info({ workflowId, userId: state.userId, invitationId: state.invitationId }, 'invitation started');
      const member = await getMemberByMembershipId(db, state.membershipId!);
      return { status: 202, body: member };
    });

    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  router.get('/', async (request, response) => {
    const query = parseOrThrow(listMembersQuerySchema, request.query, 'query');
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (query.cursor !== undefined && !after) {
      throw validationError([{ field: 'query.cursor', rule: 'is not a cursor returned by this endpoint' }]);
    }
    const page = await listMembers(
      db,
      request.principal!.environmentId,
      { status: query.status, role: query.role, emailPrefix: query.q === undefined ? undefined : normalizeEmail(query.q) },
      { limit: query.limit, after },
    );
    response.json(page);
  });


  function pendingInvitation(member: MemberView): NonNullable<MemberView['invitation']> {
    if (member.invitation?.status !== 'pending') {
      throw conflict('invitation_not_pending', `User ${member.id} has no pending invitation in this environment.`);
    }
    return member.invitation;
  }

  router.get('/:userId', async (request, response) => {
    response.json(await findMemberOrThrow(db, request.principal!.environmentId, request.params.userId as string));
  });

  // A resend creates a new link and email, so a retried request must not send a second one.
  router.post('/:userId/invitation/resend', async (request, response) => {
    const principal = request.principal!;
    const result = await withIdempotency(db, request, async () => {
      const member = await findMemberOrThrow(db, principal.environmentId, request.params.userId as string);
      const invitation = pendingInvitation(member);
      await invitations.resend(invitation.workflowId, principal.userId);
      return { status: 200, body: await findMemberOrThrow(db, principal.environmentId, member.id) };
    });
    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  router.post('/:userId/invitation/revoke', async (request, response) => {
    const principal = request.principal!;
    const member = await findMemberOrThrow(db, principal.environmentId, request.params.userId as string);
    const invitation = pendingInvitation(member);
    if (member.roles.includes('administrator') && !isAdministrator(principal)) {
      throw new HttpError(403, 'forbidden', 'Only an administrator may revoke an invitation that grants the administrator role.');
    }
    const state = await invitations.revoke(invitation.workflowId, principal.userId);
    if (state.phase !== 'revoked') {
      throw conflict('invitation_not_pending', `The invitation was ${state.phase} before it could be revoked.`);
    }
    response.json(await findMemberOrThrow(db, principal.environmentId, member.id));
  });

  return router;
}
