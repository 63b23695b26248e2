import { ApplicationFailure, log } from '@temporalio/activity';
import type { Knex } from 'knex';

import { recordAuditEvent } from '../db/audit.js';
import { normalizeEmail } from '../lib/email-address.js';
import { EmailRateLimitedError, PermanentEmailError, type EmailSender } from '../lib/email/index.js';
import { invitationEmail, type InvitationEmailKind } from '../lib/email/templates.js';
import { deriveLinkToken, hashToken, randomSalt } from '../lib/secrets.js';
import { currentWorkflow, reject, UNIQUE_VIOLATION } from './support.js';

/** Invitation statuses after the invitation has ended. */
export type SettledInvitationStatus = 'accepted' | 'expired' | 'revoked';

export interface RecordInvitationInput {
  accountId: string;
  environmentId: string;
  email: string;
  roles: string[];
  invitedByUserId: string | null;
  expiresAt: string;
  /** Allows a deactivated membership, which reactivation turns back into an invitation. */
  reactivation?: boolean;
  batchId?: string;
}

export interface RecordedInvitation {
  invitationId: string;
  membershipId: string;
  userId: string;
  expiresAt: string;
}

export interface SendInvitationEmailInput {
  invitationId: string;
  /** Names the workflow step (`initial`, `reminder`, `resend-2`); one email per step, whatever the retries. */
  step: string;
  kind: InvitationEmailKind;
  /** New expiry, for a resend. */
  expiresAt?: string;
  actorUserId?: string | null;
  /** False to create the link without mailing it, when one email for several invitations carries it. */
  deliver?: boolean;
}

export interface InvitationDependencies {
  db: Knex;
  email: EmailSender;
  /** Key that derives invitation tokens; see deriveLinkToken. */
  tokenKey: Buffer;
  appBaseUrl: string;
}

/** Failure types of invitation activities that no retry can fix. */
export const InvitationRejection = {
  alreadyMember: 'AlreadyMember',
  memberDeactivated: 'MemberDeactivated',
  alreadyInvited: 'InvitationPending',
  notFound: 'InvitationNotFound',
  emailRejected: 'EmailRejected',
} as const;

/** Builds the invitation activities around their dependencies; the worker calls this once. */
export function createInvitationActivities({ db, email, tokenKey, appBaseUrl }: InvitationDependencies) {
  /**
   * Records the invitation: the person, their membership as `invited` with its roles, the invitation
   * row and an audit event, in one transaction. Safe to retry: a second run of the same workflow run
   * returns what the first stored.
   */
  async function recordInvitation(input: RecordInvitationInput): Promise<RecordedInvitation> {
    const { workflowId, runId } = currentWorkflow();
    const emailNormalized = normalizeEmail(input.email);

    return db.transaction(async (trx) => {
      const earlier = await trx('invitations').where({ workflow_run_id: runId }).first();
      if (earlier) {
        const membership = await trx('memberships').where({ id: earlier.membership_id }).first();
        return {
          invitationId: earlier.id,
          membershipId: earlier.membership_id,
          userId: membership.user_id,
          expiresAt: new Date(earlier.expires_at).toISOString(),
        };
      }

      await trx('users').insert({ email: input.email.trim() }).onConflict('email_normalized').ignore();
      const user = await trx('users').where({ email_normalized: emailNormalized }).first();

      await trx('memberships')
        .insert({ user_id: user.id, account_id: input.accountId, environment_id: input.environmentId, status: 'invited' })
        .onConflict(['user_id', 'environment_id'])
        .ignore();
      const membership = await trx('memberships')
        .where({ user_id: user.id, environment_id: input.environmentId })
        .forUpdate()
        .first();

      if (membership.status === 'active') {
        throw reject(InvitationRejection.alreadyMember, 'This person is already an active member of this environment.');
      }
      if (membership.status === 'deactivated' && !input.reactivation) {
        throw reject(
          InvitationRejection.memberDeactivated,
          'This person is a deactivated member of this environment; reactivate the membership instead of inviting again.',
        );
      }

      await trx('memberships').where({ id: membership.id }).update({
        status: 'invited',
        invited_by_user_id: input.invitedByUserId,
        invited_at: trx.fn.now(),
        activated_at: null,
        deactivated_at: null,
        deactivated_by_user_id: null,
        status_before_deactivation: null,
        updated_at: trx.fn.now(),
      });
      await trx('membership_roles').where({ membership_id: membership.id }).delete();
      await trx('membership_roles').insert(input.roles.map((role) => ({ membership_id: membership.id, role_key: role })));

      let invitation;
      try {
        [invitation] = await trx('invitations')
          .insert({
            membership_id: membership.id,
            environment_id: input.environmentId,
            email_normalized: emailNormalized,
            expires_at: input.expiresAt,
            workflow_id: workflowId,
            workflow_run_id: runId,
            invited_by_user_id: input.invitedByUserId,
            batch_id: input.batchId ?? null,
          })
          .returning('*');
      } catch (error) {
        if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
          throw reject(InvitationRejection.alreadyInvited, 'This person already has a pending invitation to this environment.');
        }
        throw error;
      }

      await recordAuditEvent(trx, {
        actorType: input.invitedByUserId ? 'user' : 'system',
        actorUserId: input.invitedByUserId,
        action: 'invitation.created',
        targetUserId: user.id,
        accountId: input.accountId,
        environmentId: input.environmentId,
        workflowId,
        details: { invitationId: invitation.id, roles: [...input.roles].sort(), expiresAt: input.expiresAt },
        eventKey: `invitation.created:${invitation.id}`,
      });

      return {
        invitationId: invitation.id,
        membershipId: membership.id,
        userId: user.id,
        expiresAt: new Date(invitation.expires_at).toISOString(),
      };
    });
  }

  /**
   * Sends one invitation email for one workflow step. The first attempt stores the step with a fresh
   * token salt, or the current link's salt for a reminder. A retry finds that row and mails the same link
   * again, or nothing if the earlier attempt finished. Returns the invitation's status: `pending`, unless
   * the invitation ended meanwhile, in which case no email goes out.
   */
  async function sendInvitationEmail(input: SendInvitationEmailInput): Promise<{ status: 'pending' | SettledInvitationStatus }> {
    const { workflowId } = currentWorkflow();

    const prepared = await db.transaction(async (trx) => {
      const invitation = await trx('invitations').where({ id: input.invitationId }).forUpdate().first();
      if (!invitation) {
        throw reject(InvitationRejection.notFound, `Invitation ${input.invitationId} does not exist.`);
      }
      const existing = await trx('invitation_emails').where({ invitation_id: invitation.id, step: input.step }).first();
      if (existing?.status === 'sent') {
        return { status: invitation.status, emailId: null };
      }
      if (existing?.status === 'rejected') {
        // An earlier attempt stored the rejection and then failed to report it; report it without sending again.
        throw reject(InvitationRejection.emailRejected, `The email provider rejected this address: ${existing.rejection_reason}`);
      }
      if (invitation.status !== 'pending') {
        return { status: invitation.status, emailId: null };
      }

      const context = await trx('memberships')
        .join('users', 'users.id', 'memberships.user_id')
        .join('environments', 'environments.id', 'memberships.environment_id')
        .join('accounts', 'accounts.id', 'memberships.account_id')
        .leftJoin('users as inviter', 'inviter.id', 'memberships.invited_by_user_id')
        .where('memberships.id', invitation.membership_id)
        .first(
          'users.id as userId',
          'users.email as email',
          'environments.name as environment',
          'accounts.id as accountId',
          'accounts.name as accountName',
          'inviter.email as invitedBy',
        );

      let emailRow = existing;
      if (!emailRow) {
        const salt =
          input.kind === 'reminder'
            ? (
                await trx('invitation_emails')
                  .where({ invitation_id: invitation.id })
                  .whereIn('kind', ['invitation', 'resend'])
                  .orderBy('created_at', 'desc')
                  .first('token_salt')
              ).token_salt
            : randomSalt();
        [emailRow] = await trx('invitation_emails')
          .insert({ invitation_id: invitation.id, step: input.step, kind: input.kind, token_salt: salt, status: 'sending' })
          .returning('*');
        await applyEmailToInvitation(trx, invitation, input, salt, { workflowId, ...context });
      }

      const refreshed = await trx('invitations').where({ id: invitation.id }).first('expires_at');
      return {
        status: 'pending' as const,
        emailId: emailRow.id as string,
        salt: emailRow.token_salt as Buffer,
        expiresAt: new Date(refreshed.expires_at),
        ...context,
      };
    });

    if (!prepared.emailId) {
      return { status: prepared.status };
    }
    if (input.deliver === false) {
      await db('invitation_emails').where({ id: prepared.emailId }).update({ status: 'sent', sent_at: db.fn.now() });
      return { status: 'pending' };
    }

    const token = deriveLinkToken(tokenKey, input.invitationId, prepared.salt);
    const link = `${appBaseUrl}/invitations/accept?token=${encodeURIComponent(token)}`;
    const message = invitationEmail({
      kind: input.kind,
      to: prepared.email,
      accountName: prepared.accountName,
      environment: prepared.environment,
      link,
      expiresAt: prepared.expiresAt,
      invitedBy: prepared.invitedBy ?? null,
    });

    let messageId: string | null;
    try {
      ({ messageId } = await email.send(message));
    } catch (error) {
      if (error instanceof PermanentEmailError) {
        await recordEmailRejection(prepared, input, error);
        throw reject(InvitationRejection.emailRejected, error.message);
      }
      if (error instanceof EmailRateLimitedError && error.retryAfterMs !== null) {
        // Overrides the retry policy's next interval with the provider's Retry-After for this one retry.
        throw ApplicationFailure.create({ type: 'EmailRateLimited', message: error.message, nextRetryDelay: error.retryAfterMs });
      }
      throw error;
    }

    await db('invitation_emails')
      .where({ id: prepared.emailId })
      .update({ status: 'sent', sent_at: db.fn.now(), provider_message_id: messageId });
    // The activity logger adds the workflow id, activity and attempt to this line.
    log.info('Invitation email sent', { invitationId: input.invitationId, step: input.step, kind: input.kind, messageId });
    return { status: 'pending' };
  }

  /**
   * Marks the step's email as rejected with the provider's reason and writes an `invitation.email_rejected`
   * audit event, both once per step. The reason is the provider's error text, not the message with its link.
   */
  async function recordEmailRejection(
    prepared: { emailId: string; userId: string; accountId: string },
    input: SendInvitationEmailInput,
    error: PermanentEmailError,
  ): Promise<void> {
    const { workflowId } = currentWorkflow();
    await db.transaction(async (trx) => {
      const [rejected] = await trx('invitation_emails')
        .where({ id: prepared.emailId, status: 'sending' })
        .update({ status: 'rejected', rejected_at: trx.fn.now(), rejection_reason: error.reason })
        .returning('invitation_id');
      if (!rejected) {
        return;
      }
      const invitation = await trx('invitations').where({ id: input.invitationId }).first('environment_id');
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: 'invitation.email_rejected',
        targetUserId: prepared.userId,
        accountId: prepared.accountId,
        environmentId: invitation.environment_id,
        workflowId,
        details: { invitationId: input.invitationId, step: input.step, statusCode: error.statusCode, reason: error.reason },
        eventKey: `invitation.email_rejected:${input.invitationId}:${input.step}`,
      });
    });
  }

  /** Stores what an email changes on the invitation: a new link (old one dead), expiry, counters, audit. */
  async function applyEmailToInvitation(
    trx: Knex.Transaction,
    invitation: { id: string; environment_id: string },
    input: SendInvitationEmailInput,
    salt: Buffer,
    context: { workflowId: string; userId: string; accountId: string },
  ): Promise<void> {
    if (input.kind === 'reminder') {
      await trx('invitations').where({ id: invitation.id }).update({ reminder_sent_at: trx.fn.now() });
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: 'invitation.reminder_sent',
        targetUserId: context.userId,
        accountId: context.accountId,
        environmentId: invitation.environment_id,
        workflowId: context.workflowId,
        eventKey: `invitation.reminder_sent:${invitation.id}`,
      });
      return;
    }

    const tokenHash = hashToken(deriveLinkToken(tokenKey, invitation.id, salt));
    const changes: Record<string, unknown> = { token_hash: tokenHash, last_sent_at: trx.fn.now() };
    if (input.kind === 'resend') {
      changes.expires_at = input.expiresAt;
      changes.resend_count = trx.raw('resend_count + 1');
    }
    await trx('invitations').where({ id: invitation.id }).update(changes);

    if (input.kind === 'resend') {
      await recordAuditEvent(trx, {
        actorType: input.actorUserId ? 'user' : 'system',
        actorUserId: input.actorUserId ?? null,
        action: 'invitation.resent',
        targetUserId: context.userId,
        accountId: context.accountId,
        environmentId: invitation.environment_id,
        workflowId: context.workflowId,
        details: { invitationId: invitation.id, step: input.step, expiresAt: input.expiresAt },
        eventKey: `invitation.resent:${invitation.id}:${input.step}`,
      });
    }
  }

  /** Ends a pending invitation with the given status; returns the status it has afterwards. */
  async function endInvitation(
    invitationId: string,
    status: 'expired' | 'revoked',
    audit: { actorUserId: string | null; reason?: string },
  ): Promise<{ status: SettledInvitationStatus }> {
    const { workflowId } = currentWorkflow();
    return db.transaction(async (trx) => {
      const invitation = await trx('invitations').where({ id: invitationId }).forUpdate().first();
      if (!invitation) {
        throw reject(InvitationRejection.notFound, `Invitation ${invitationId} does not exist.`);
      }
      if (invitation.status !== 'pending') {
        return { status: invitation.status as SettledInvitationStatus };
      }

      await trx('invitations')
        .where({ id: invitationId })
        .update({ status, token_hash: null, ended_at: trx.fn.now() });
      const [membership] = await trx('memberships')
        .where({ id: invitation.membership_id, status: 'invited' })
        .update({ status, updated_at: trx.fn.now() })
        .returning(['user_id', 'account_id']);
      const owner = membership ?? (await trx('memberships').where({ id: invitation.membership_id }).first('user_id', 'account_id'));

      await recordAuditEvent(trx, {
        actorType: audit.actorUserId ? 'user' : 'system',
        actorUserId: audit.actorUserId,
        action: `invitation.${status}`,
        targetUserId: owner.user_id,
        accountId: owner.account_id,
        environmentId: invitation.environment_id,
        workflowId,
        details: { invitationId, ...(audit.reason ? { reason: audit.reason } : {}) },
        eventKey: `invitation.${status}:${invitationId}`,
      });
      return { status };
    });
  }

  async function expireInvitation(input: { invitationId: string }): Promise<{ status: SettledInvitationStatus }> {
    return endInvitation(input.invitationId, 'expired', { actorUserId: null });
  }

  async function revokeInvitation(input: {
    invitationId: string;
    actorUserId: string | null;
    reason: string;
  }): Promise<{ status: SettledInvitationStatus }> {
    return endInvitation(input.invitationId, 'revoked', { actorUserId: input.actorUserId, reason: input.reason });
  }

  return { recordInvitation, sendInvitationEmail, expireInvitation, revokeInvitation };
}

export type InvitationActivities = ReturnType<typeof createInvitationActivities>;
