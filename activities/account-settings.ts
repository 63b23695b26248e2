import { randomUUID } from 'node:crypto';

import { log } from '@temporalio/activity';

import { recordAuditEvent } from '../db/audit.js';
import { PermanentEmailError, type EmailMessage } from '../lib/email/index.js';
import { emailChangeConfirmationEmail, emailChangeNoticeEmail, passwordResetEmail } from '../lib/email/templates-account-settings.js';
import { deriveLinkToken, hashToken, randomSalt } from '../lib/secrets.js';
import type { ActivityDependencies } from './dependencies.js';
import { currentWorkflow, reject } from './support.js';

/** Values of the `email_change_status` type. */
export type EmailChangeStatus = 'pending' | 'confirmed' | 'expired' | 'failed' | 'cancelled' | 'superseded';
/** Values of the `password_reset_status` type. */
export type PasswordResetStatus = 'pending' | 'used' | 'expired' | 'superseded';

/** Failure types of these activities that no retry can fix. */
export const AccountSettingsRejection = {
  userNotFound: 'UserNotFound',
  emailChangeNotFound: 'EmailChangeNotFound',
  passwordResetNotFound: 'PasswordResetNotFound',
  notInWorkflow: 'NotInWorkflow',
} as const;

export interface RecordEmailChangeInput {
  userId: string;
  newEmail: string;
  requestedBySessionId: string;
  expiresAt: string;
}

export interface SendPasswordResetEmailInput {
  userId: string;
  /** Names the request within the workflow; one link and one email per step, whatever the retries. */
  step: string;
  expiresAt: string;
}

/** Builds the email-change and password-reset activities around their dependencies; the worker calls this once. */
export function createAccountSettingsActivities({ config, db, email, tokenKey }: ActivityDependencies) {
  const { appBaseUrl } = config;

  /** Sends one message; returns null when the provider rejected it for good, so that the caller can end the record. */
  async function deliver(message: EmailMessage): Promise<{ messageId: string | null } | null> {
    try {
      return await email.send(message);
    } catch (error) {
      if (error instanceof PermanentEmailError) {
        log.warn('Email provider rejected the message', { category: message.categories?.[0], statusCode: error.statusCode });
        return null;
      }
      throw error;
    }
  }

  /**
   * Ends a pending email change with the given status and clears its token. Returns the status it has
   * afterwards, so a change that had already ended returns its stored status.
   */
  async function endEmailChange(
    emailChangeId: string,
    status: 'expired' | 'failed',
    reason: string,
  ): Promise<{ status: EmailChangeStatus }> {
    return db.transaction(async (trx) => {
      const change = await trx('email_changes').where({ id: emailChangeId }).forUpdate().first('id', 'user_id', 'status', 'workflow_id');
      if (!change) {
        throw reject(AccountSettingsRejection.emailChangeNotFound, `Email change ${emailChangeId} does not exist.`);
      }
      if (change.status !== 'pending') {
        return { status: change.status as EmailChangeStatus };
      }
      await trx('email_changes').where({ id: change.id }).update({ status, token_hash: null, ended_at: trx.fn.now() });
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: `email_change.${status}`,
        targetUserId: change.user_id,
        accountId: null,
        environmentId: null,
        workflowId: change.workflow_id,
        details: { emailChangeId, reason },
        eventKey: `email_change.${status}:${emailChangeId}`,
      });
      return { status };
    });
  }

  /**
   * Records an email change request with a fresh link, in one transaction. Any pending change of the
   * user becomes `superseded`, so its link stops working. The new row stores the link's salt and the
   * SHA-256 of its token, and an audit event is written. A retry within the same workflow run returns
   * what the first attempt stored.
   */
  async function recordEmailChange(input: RecordEmailChangeInput): Promise<{ emailChangeId: string; expiresAt: string }> {
    const { workflowId, runId } = currentWorkflow();

    return db.transaction(async (trx) => {
      const earlier = await trx('email_changes').where({ workflow_run_id: runId }).first('id', 'expires_at');
      if (earlier) {
        return { emailChangeId: earlier.id, expiresAt: new Date(earlier.expires_at).toISOString() };
      }

      // Locking the person serializes this with the API's confirmation, password change and reset.
      const user = await trx('users').where({ id: input.userId }).forUpdate().first('id', 'email');
      if (!user) {
        throw reject(AccountSettingsRejection.userNotFound, `User ${input.userId} does not exist.`);
      }

      const superseded: { id: string; workflow_id: string }[] = await trx('email_changes')
        .where({ user_id: user.id, status: 'pending' })
        .update({ status: 'superseded', token_hash: null, ended_at: trx.fn.now() })
        .returning(['id', 'workflow_id']);
      for (const change of superseded) {
        await recordAuditEvent(trx, {
          actorType: 'user',
          actorUserId: user.id,
          action: 'email_change.superseded',
          targetUserId: user.id,
          accountId: null,
          environmentId: null,
          workflowId: change.workflow_id,
          details: { emailChangeId: change.id, reason: 'newer_request' },
          eventKey: `email_change.superseded:${change.id}`,
        });
      }

      const emailChangeId = randomUUID();
      const salt = randomSalt();
      await trx('email_changes').insert({
        id: emailChangeId,
        user_id: user.id,
        new_email: input.newEmail,
        old_email: user.email,
        status: 'pending',
        token_hash: hashToken(deriveLinkToken(tokenKey, emailChangeId, salt)),
        token_salt: salt,
        expires_at: input.expiresAt,
        workflow_id: workflowId,
        workflow_run_id: runId,
      });
      await recordAuditEvent(trx, {
        actorType: 'user',
        actorUserId: user.id,
        action: 'email_change.requested',
        targetUserId: user.id,
        accountId: null,
        environmentId: null,
        workflowId,
        details: {
          emailChangeId,
          oldEmail: user.email,
          newEmail: input.newEmail,
          sessionId: input.requestedBySessionId,
          expiresAt: input.expiresAt,
        },
        eventKey: `email_change.requested:${emailChangeId}`,
      });
      return { emailChangeId, expiresAt: input.expiresAt };
    });
  }

  /**
   * Mails the confirmation link to the new address, once. A retry after a failed send derives the same
   * link from the stored salt; a retry after a recorded send mails nothing. Returns the change's status:
   * `pending`, or how it ended. A provider that rejects the address for good ends the change as `failed`.
   */
  async function sendEmailChangeConfirmation(input: { emailChangeId: string }): Promise<{ status: EmailChangeStatus }> {
    const change = await db('email_changes').where({ id: input.emailChangeId }).first();
    if (!change) {
      throw reject(AccountSettingsRejection.emailChangeNotFound, `Email change ${input.emailChangeId} does not exist.`);
    }
    if (change.status !== 'pending' || change.confirmation_sent_at !== null) {
      return { status: change.status };
    }

    const token = deriveLinkToken(tokenKey, change.id, change.token_salt);
    const link = `${appBaseUrl}/email-changes/confirm?token=${encodeURIComponent(token)}`;
    const sent = await deliver(emailChangeConfirmationEmail({ to: change.new_email, link, expiresAt: new Date(change.expires_at) }));
    if (!sent) {
      return endEmailChange(change.id, 'failed', 'email_rejected');
    }

    await db('email_changes').where({ id: change.id }).whereNull('confirmation_sent_at').update({ confirmation_sent_at: db.fn.now() });
    log.info('Email change confirmation sent', { emailChangeId: change.id, messageId: sent.messageId });
    return { status: 'pending' };
  }

  /**
   * Mails the notice to the old address, once. It goes out while the change is pending and also after it
   * was confirmed, so the owner of the old address always learns of a change that took effect.
   * `delivered` is false when nothing was sent, including when the provider rejected the old address.
   */
  async function sendEmailChangeNotice(input: { emailChangeId: string }): Promise<{ status: EmailChangeStatus; delivered: boolean }> {
    const change = await db('email_changes').where({ id: input.emailChangeId }).first();
    if (!change) {
      throw reject(AccountSettingsRejection.emailChangeNotFound, `Email change ${input.emailChangeId} does not exist.`);
    }
    if (!['pending', 'confirmed'].includes(change.status) || change.notice_sent_at !== null) {
      return { status: change.status, delivered: false };
    }

    const sent = await deliver(
      emailChangeNoticeEmail({ to: change.old_email, newEmail: change.new_email, expiresAt: new Date(change.expires_at) }),
    );
    if (!sent) {
      return { status: change.status, delivered: false };
    }

    await db('email_changes').where({ id: change.id }).whereNull('notice_sent_at').update({ notice_sent_at: db.fn.now() });
    log.info('Email change notice sent', { emailChangeId: change.id, messageId: sent.messageId });
    return { status: change.status, delivered: true };
  }

  async function expireEmailChange(input: { emailChangeId: string }): Promise<{ status: EmailChangeStatus }> {
    return endEmailChange(input.emailChangeId, 'expired', 'link_expired');
  }

  /** Ends a pending reset link with the given status; returns the status it has afterwards. */
  async function endPasswordReset(resetId: string, status: 'expired', reason: string): Promise<{ status: PasswordResetStatus }> {
    return db.transaction(async (trx) => {
      const reset = await trx('password_resets').where({ id: resetId }).forUpdate().first('id', 'user_id', 'status', 'workflow_id');
      if (!reset) {
        throw reject(AccountSettingsRejection.passwordResetNotFound, `Password reset ${resetId} does not exist.`);
      }
      if (reset.status !== 'pending') {
        return { status: reset.status as PasswordResetStatus };
      }
      await trx('password_resets').where({ id: reset.id }).update({ status, token_hash: null, ended_at: trx.fn.now() });
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: `password_reset.${status}`,
        targetUserId: reset.user_id,
        accountId: null,
        environmentId: null,
        workflowId: reset.workflow_id,
        details: { resetId, reason },
        eventKey: `password_reset.${status}:${resetId}`,
      });
      return { status };
    });
  }

  /**
   * Creates the link of one reset request and mails it. The first attempt stores the row with a fresh
   * salt and marks the person's previous pending link `superseded`, in one transaction. A retry finds the
   * row by its step and mails the same link again, or nothing if an earlier attempt finished. Returns
   * `skipped` when the person no longer exists or has no password, and `expired` when the provider
   * rejected the address for good.
   */
  async function sendPasswordResetEmail(
    input: SendPasswordResetEmailInput,
  ): Promise<{ resetId: string | null; status: PasswordResetStatus | 'skipped' }> {
    const { workflowId } = currentWorkflow();

    const prepared = await db.transaction(async (trx) => {
      const existing = await trx('password_resets').where({ workflow_id: workflowId, step: input.step }).first();
      if (existing) {
        return existing;
      }

      // Locking the person serializes this with the API's reset confirmation and email confirmation.
      const user = await trx('users').where({ id: input.userId }).forUpdate().first('id', 'password_hash');
      if (!user || user.password_hash === null) {
        return undefined;
      }

      const superseded: { id: string }[] = await trx('password_resets')
        .where({ user_id: user.id, status: 'pending' })
        .update({ status: 'superseded', token_hash: null, ended_at: trx.fn.now() })
        .returning(['id']);
      for (const reset of superseded) {
        await recordAuditEvent(trx, {
          actorType: 'system',
          actorUserId: null,
          action: 'password_reset.superseded',
          targetUserId: user.id,
          accountId: null,
          environmentId: null,
          workflowId,
          details: { resetId: reset.id, reason: 'newer_request' },
          eventKey: `password_reset.superseded:${reset.id}`,
        });
      }

      const resetId = randomUUID();
      const salt = randomSalt();
      const [inserted] = await trx('password_resets')
        .insert({
          id: resetId,
          user_id: user.id,
          status: 'pending',
          token_hash: hashToken(deriveLinkToken(tokenKey, resetId, salt)),
          token_salt: salt,
          step: input.step,
          expires_at: input.expiresAt,
          workflow_id: workflowId,
        })
        .returning('*');
      // The requester is not signed in, so the event names no actor.
      await recordAuditEvent(trx, {
        actorType: 'system',
        actorUserId: null,
        action: 'password_reset.requested',
        targetUserId: user.id,
        accountId: null,
        environmentId: null,
        workflowId,
        details: { resetId, step: input.step, expiresAt: input.expiresAt },
        eventKey: `password_reset.requested:${resetId}`,
      });
      return inserted;
    });

    if (!prepared) {
      log.info('Password reset skipped: the person no longer exists or has no password', { userId: input.userId });
      return { resetId: null, status: 'skipped' };
    }
    if (prepared.status !== 'pending' || prepared.sent_at !== null) {
      return { resetId: prepared.id, status: prepared.status };
    }

    const user = await db('users').where({ id: prepared.user_id }).first('email');
    const token = deriveLinkToken(tokenKey, prepared.id, prepared.token_salt);
    const link = `${appBaseUrl}/password-reset?token=${encodeURIComponent(token)}`;
    const sent = await deliver(passwordResetEmail({ to: user.email, link, expiresAt: new Date(prepared.expires_at) }));
    if (!sent) {
      const ended = await endPasswordReset(prepared.id, 'expired', 'email_rejected');
      return { resetId: prepared.id, status: ended.status };
    }

    await db('password_resets').where({ id: prepared.id }).whereNull('sent_at').update({ sent_at: db.fn.now() });
    log.info('Password reset email sent', { resetId: prepared.id, step: input.step, messageId: sent.messageId });
    return { resetId: prepared.id, status: 'pending' };
  }

  async function expirePasswordReset(input: { resetId: string }): Promise<{ status: PasswordResetStatus }> {
    return endPasswordReset(input.resetId, 'expired', 'link_expired');
  }

  return {
    recordEmailChange,
    sendEmailChangeConfirmation,
    sendEmailChangeNotice,
    expireEmailChange,
    sendPasswordResetEmail,
    expirePasswordReset,
  };
}

export type AccountSettingsActivities = ReturnType<typeof createAccountSettingsActivities>;
