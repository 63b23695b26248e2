import { randomUUID } from 'node:crypto';

import type { Client } from '@temporalio/client';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { z } from 'zod';

import { recordAuditEvent } from '../../db/audit.js';
import { emailSchema, normalizeEmail } from '../../lib/email-address.js';
import { hashPassword, passwordProblem, verifyPassword } from '../../lib/passwords.js';
import { lifecycleSearchAttributes } from '../../workflows/search-attributes.js';
import { hashToken, randomToken } from '../../lib/secrets.js';
import {
  emailChangeEndedSignal,
  emailChangeRequestedSignal,
  emailChangeWorkflow,
  emailChangeWorkflowId,
  passwordResetEndedSignal,
  passwordResetRequestedSignal,
  passwordResetWorkflow,
  passwordResetWorkflowId,
} from '../../workflows/account-settings.js';
import { authenticate, requireSession } from '../auth.js';
import { HttpError, parseOrThrow, validationError } from '../errors.js';
import {
  deadLinkPage,
  emailChangeConfirmPage,
  emailChangedPage,
  failurePage,
  passwordResetDonePage,
  passwordResetPage,
} from '../pages-account-settings.js';
import { revokeSessions } from '../sessions.js';
import type { RouterDependencies } from './dependencies.js';

// Password change, email change and password reset. Passwords are checked, hashed and stored here, in
// the API's own transactions, so that they never reach a workflow. The workflows own the timers and the
// emails, and the API signals them after each commit.

// ---------------------------------------------------------------------------------------------------
// Request and response shapes, shared with api/openapi-account-settings.ts

const passwordText = z.string().max(1000, 'must be at most 1000 characters');
const linkToken = z.string().min(1, 'is required').max(200).meta({ description: 'The `token` parameter of the emailed link.' });

export const passwordChangeRequestSchema = z
  .strictObject({
    currentPassword: passwordText.min(1, 'is required'),
    newPassword: passwordText.meta({ description: '12 to 128 characters, not the email address, not the current password.' }),
  })
  .meta({ id: 'PasswordChangeRequest' });

export const passwordChangedSchema = z
  .object({ sessionsRevoked: z.number().int().meta({ description: 'How many other sessions of this person were ended.' }) })
  .meta({ id: 'PasswordChanged' });

export const emailChangeRequestSchema = z
  .strictObject({
    newEmail: emailSchema.meta({ description: 'The address to sign in with from now on; at most 254 characters.', example: 'ada@example.org' }),
    currentPassword: passwordText.min(1, 'is required'),
  })
  .meta({ id: 'EmailChangeRequest' });

export const emailChangeStartedSchema = z
  .object({
    status: z.literal('pending'),
    newEmail: z.string(),
    linkExpiresInSeconds: z.number().int().meta({ description: 'How long the confirmation link works once mailed.' }),
  })
  .meta({ id: 'EmailChangeStarted' });

export const emailChangeConfirmationSchema = z.strictObject({ token: linkToken }).meta({ id: 'EmailChangeConfirmation' });

export const emailChangedSchema = z.object({ userId: z.uuid(), email: z.string() }).meta({ id: 'EmailChanged' });

export const passwordResetRequestSchema = z
  .strictObject({ email: emailSchema.meta({ description: 'The address the person signs in with.' }) })
  .meta({ id: 'PasswordResetRequest' });

export const passwordResetAcceptedSchema = z
  .object({ status: z.literal('accepted'), message: z.string() })
  .meta({ id: 'PasswordResetAccepted' });

export const passwordResetConfirmationSchema = z
  .strictObject({ token: linkToken, password: passwordText.meta({ description: '12 to 128 characters, not the email address.' }) })
  .meta({ id: 'PasswordResetConfirmation' });

export const passwordResetDoneSchema = z
  .object({ sessionsRevoked: z.number().int().meta({ description: 'How many sessions of this person were ended.' }) })
  .meta({ id: 'PasswordResetDone' });

// ---------------------------------------------------------------------------------------------------
// Errors and rate limits

/** Link tokens are 32 bytes in base64url; anything else cannot match, so it needs no database look-up. */
const LINK_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

const EMAIL_CHANGE_LINK_INVALID =
  'This email confirmation link is not valid: it was already used, was replaced by a newer request, was cancelled by a password change, or has expired. Sign in and request the change again.';
const PASSWORD_RESET_LINK_INVALID =
  'This password reset link is not valid: it was already used, was replaced by a newer link, or has expired. Ask for a new password reset link.';

const emailChangeLinkInvalid = () => new HttpError(410, 'email_change_link_invalid', EMAIL_CHANGE_LINK_INVALID);
const passwordResetLinkInvalid = () => new HttpError(410, 'password_reset_link_invalid', PASSWORD_RESET_LINK_INVALID);

const emailTaken = () =>
  new HttpError(409, 'email_taken', 'Another account already uses this email address, so the change was not made. Request a change to a different address.');

/** The same response whether or not an account has the address, so that the route reveals nothing. */
const PASSWORD_RESET_ACCEPTED = {
  status: 'accepted' as const,
  message: 'If an account uses this email address, a password reset link is on its way to it.',
};

function retryAfterSeconds(request: Request, windowMs: number): number {
  const resetTime = (request as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
  return Math.max(1, Math.ceil(((resetTime?.getTime() ?? Date.now() + windowMs) - Date.now()) / 1000));
}

/** Builds an express-rate-limit limiter (memory store) that responds 429 with Retry-After and `what` in the message. */
function limiter(options: { identifier: string; windowMs: number; limit: number; what: string; keyGenerator?: (request: Request) => string }) {
  const { what, ...rest } = options;
  // NOTE: the memory store counts per API process; several API replicas need a shared store.
  return rateLimit({
    ...rest,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (request, _response, next) => {
      const seconds = retryAfterSeconds(request, options.windowMs);
      next(
        new HttpError(429, 'rate_limited', `Too many ${what}; try again in ${seconds} s.`, { retryAfterSeconds: seconds }, {
          'Retry-After': String(seconds),
        }),
      );
    },
  });
}

// ---------------------------------------------------------------------------------------------------
// Helpers shared by the routes

type UserRow = { id: string; email: string; password_hash: string | null };

function isFormPost(request: Request): boolean {
  return request.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded';
}

/** Keeps pages and responses about single-use links out of caches (helmet already sets no-referrer). */
function noStore(response: Response): void {
  response.setHeader('Cache-Control', 'no-store');
}

function sessionOf(request: Request): { userId: string; sessionId: string } {
  const caller = request.caller;
  if (caller?.kind !== 'session') {
    throw new HttpError(403, 'forbidden', 'This route needs a session token from POST /v1/auth/login.');
  }
  return { userId: caller.userId, sessionId: caller.sessionId };
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string }).code === '23505';
}

interface EndedEmailChange {
  id: string;
  workflow_id: string;
  workflow_run_id: string;
}

/** Cancels the person's pending email change, if any, so that a password change or reset also stops an email change someone else may have started. */
async function cancelPendingEmailChanges(trx: Knex.Transaction, userId: string, reason: string): Promise<EndedEmailChange[]> {
  const cancelled: EndedEmailChange[] = await trx('email_changes')
    .where({ user_id: userId, status: 'pending' })
    .update({ status: 'cancelled', token_hash: null, ended_at: trx.fn.now() })
    .returning(['id', 'workflow_id', 'workflow_run_id']);
  for (const change of cancelled) {
    await recordAuditEvent(trx, {
      actorType: 'user',
      actorUserId: userId,
      action: 'email_change.cancelled',
      targetUserId: userId,
      accountId: null,
      environmentId: null,
      workflowId: change.workflow_id,
      details: { emailChangeId: change.id, reason },
      eventKey: `email_change.cancelled:${change.id}`,
    });
  }
  return cancelled;
}

interface EndedPasswordReset {
  id: string;
  workflow_id: string;
}

/** Ends the person's pending reset link, if any, because it was mailed to an address they no longer use. */
async function supersedePendingPasswordResets(trx: Knex.Transaction, userId: string): Promise<EndedPasswordReset[]> {
  const superseded: EndedPasswordReset[] = await trx('password_resets')
    .where({ user_id: userId, status: 'pending' })
    .update({ status: 'superseded', token_hash: null, ended_at: trx.fn.now() })
    .returning(['id', 'workflow_id']);
  for (const reset of superseded) {
    await recordAuditEvent(trx, {
      actorType: 'user',
      actorUserId: userId,
      action: 'password_reset.superseded',
      targetUserId: userId,
      accountId: null,
      environmentId: null,
      workflowId: reset.workflow_id,
      details: { resetId: reset.id, reason: 'email_changed' },
      eventKey: `password_reset.superseded:${reset.id}`,
    });
  }
  return superseded;
}

/**
 * Tells workflows about changes the API committed. A lost signal is harmless: each workflow's timer
 * later reads the stored status and ends the same way, so a failure is only logged.
 */
class AccountSettingsSignals {
  constructor(
    private readonly temporal: Client,
    private readonly logger: Logger,
  ) {}

  emailChangesEnded(changes: EndedEmailChange[], status: 'confirmed' | 'failed' | 'cancelled', log: Logger | undefined): void {
    for (const change of changes) {
      this.temporal.workflow
        .getHandle(change.workflow_id, change.workflow_run_id)
        .signal(emailChangeEndedSignal, { emailChangeId: change.id, status })
        .catch((error: unknown) => {
          (log ?? this.logger).warn({ err: error, workflowId: change.workflow_id }, 'could not signal the email change workflow');
        });
    }
  }

  passwordResetsEnded(resets: EndedPasswordReset[], status: 'used' | 'superseded', log: Logger | undefined): void {
    for (const reset of resets) {
      this.temporal.workflow
        .getHandle(reset.workflow_id)
        .signal(passwordResetEndedSignal, { resetId: reset.id, status })
        .catch((error: unknown) => {
          (log ?? this.logger).warn({ err: error, workflowId: reset.workflow_id }, 'could not signal the password reset workflow');
        });
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Transactions behind the link routes

async function previewEmailChange(db: Knex, token: string): Promise<{ newEmail: string; expiresAt: Date } | undefined> {
  if (!LINK_TOKEN_PATTERN.test(token)) {
    return undefined;
  }
  const row = await db('email_changes')
    .where({ token_hash: hashToken(token), status: 'pending' })
    .where('expires_at', '>', db.fn.now())
    .first('new_email', 'expires_at');
  return row ? { newEmail: row.new_email, expiresAt: new Date(row.expires_at) } : undefined;
}

type EmailChangeConfirmation =
  | { result: 'confirmed'; userId: string; email: string; change: EndedEmailChange; supersededResets: EndedPasswordReset[] }
  | { result: 'taken'; change: EndedEmailChange };

/**
 * Applies a confirmed email change in one transaction, or ends it as `failed` when another user has the
 * address by now. The unique index on users' normalized email is the last guard against a user who
 * takes the address between the check and the update. A confirmed change also ends any pending reset
 * link, because that link went to the old address. Throws 410 for a link that no longer works.
 */
async function confirmEmailChange(db: Knex, token: string): Promise<EmailChangeConfirmation> {
  if (!LINK_TOKEN_PATTERN.test(token)) {
    throw emailChangeLinkInvalid();
  }

  return db.transaction(async (trx) => {
    const change = await trx('email_changes')
      .where({ token_hash: hashToken(token), status: 'pending' })
      .where('expires_at', '>', trx.fn.now())
      .forUpdate()
      .first();
    if (!change) {
      throw emailChangeLinkInvalid();
    }
    const user = await trx('users').where({ id: change.user_id }).forUpdate().first('id', 'email');

    const holder = await trx('users').where({ email_normalized: change.new_email_normalized }).whereNot({ id: user.id }).first('id');
    let addressTaken = holder !== undefined;
    if (!addressTaken) {
      try {
        // A savepoint, so that a unique violation leaves the transaction usable for recording the failure.
        await trx.transaction(async (savepoint) => {
          await savepoint('users').where({ id: user.id }).update({ email: change.new_email, updated_at: savepoint.fn.now() });
        });
      } catch (error) {
        if (!isUniqueViolation(error)) {
          throw error;
        }
        addressTaken = true;
      }
    }

    const ended = { id: change.id, workflow_id: change.workflow_id, workflow_run_id: change.workflow_run_id };
    const status = addressTaken ? 'failed' : 'confirmed';
    await trx('email_changes').where({ id: change.id }).update({ status, token_hash: null, ended_at: trx.fn.now() });
    await recordAuditEvent(trx, {
      actorType: 'user',
      actorUserId: user.id,
      action: `email_change.${status}`,
      targetUserId: user.id,
      accountId: null,
      environmentId: null,
      workflowId: change.workflow_id,
      details: addressTaken
        ? { emailChangeId: change.id, reason: 'email_taken' }
        : { emailChangeId: change.id, oldEmail: user.email, newEmail: change.new_email },
      eventKey: `email_change.${status}:${change.id}`,
    });
    if (addressTaken) {
      return { result: 'taken', change: ended };
    }

    const supersededResets = await supersedePendingPasswordResets(trx, user.id);
    return { result: 'confirmed', userId: user.id, email: change.new_email, change: ended, supersededResets };
  });
}

async function previewPasswordReset(db: Knex, token: string): Promise<{ email: string; expiresAt: Date } | undefined> {
  if (!LINK_TOKEN_PATTERN.test(token)) {
    return undefined;
  }
  const row = await db('password_resets')
    .join('users', 'users.id', 'password_resets.user_id')
    .where({ 'password_resets.token_hash': hashToken(token), 'password_resets.status': 'pending' })
    .where('password_resets.expires_at', '>', db.fn.now())
    .first('users.email', 'password_resets.expires_at');
  return row ? { email: row.email, expiresAt: new Date(row.expires_at) } : undefined;
}

interface CompletedPasswordReset {
  userId: string;
  sessionsRevoked: number;
  reset: EndedPasswordReset;
  cancelledEmailChanges: EndedEmailChange[];
}

/**
 * Sets the new password behind a reset link in one transaction: the link is used up, every session of
 * the person ends, a pending email change is cancelled, and an audit event is written. A password that
 * breaks a rule throws 400 and changes nothing, so the link keeps working; a dead link throws 410.
 */
async function completePasswordReset(db: Knex, token: string, password: string): Promise<CompletedPasswordReset> {
  if (!LINK_TOKEN_PATTERN.test(token)) {
    throw passwordResetLinkInvalid();
  }

  return db.transaction(async (trx) => {
    const reset = await trx('password_resets')
      .where({ token_hash: hashToken(token), status: 'pending' })
      .where('expires_at', '>', trx.fn.now())
      .forUpdate()
      .first('id', 'user_id', 'workflow_id');
    if (!reset) {
      throw passwordResetLinkInvalid();
    }
    const user = await trx('users').where({ id: reset.user_id }).forUpdate().first('id', 'email');

    const problem = passwordProblem(password, user.email);
    if (problem) {
      throw validationError([{ field: 'body.password', rule: problem }]);
    }
    const passwordHash = await hashPassword(password);

    await trx('users').where({ id: user.id }).update({ password_hash: passwordHash, updated_at: trx.fn.now() });
    await trx('password_resets').where({ id: reset.id }).update({ status: 'used', token_hash: null, ended_at: trx.fn.now() });
    const sessionsRevoked = await revokeSessions(trx, user.id, 'password_reset');
    const cancelledEmailChanges = await cancelPendingEmailChanges(trx, user.id, 'password_reset');
    await recordAuditEvent(trx, {
      actorType: 'user',
      actorUserId: user.id,
      action: 'password_reset.completed',
      targetUserId: user.id,
      accountId: null,
      environmentId: null,
      workflowId: reset.workflow_id,
      details: { resetId: reset.id, sessionsRevoked },
      eventKey: `password_reset.completed:${reset.id}`,
    });

    return { userId: user.id, sessionsRevoked, reset: { id: reset.id, workflow_id: reset.workflow_id }, cancelledEmailChanges };
  });
}

// ---------------------------------------------------------------------------------------------------
// Routes

/** Password change, email change and password reset, mounted at the root of the app. */
export function accountSettingsRouter({ config, db, temporal, logger }: RouterDependencies): Router {
  const router = Router();
  const signals = new AccountSettingsSignals(temporal, logger);
  // Verified when a user has no password, so that the response takes as long as for a wrong one.
  const decoyHash = hashPassword(randomToken());

  const { perEmail, perIp, windowMs } = config.loginRateLimit;
  // Routes that check the current password share one count per person and one per client address,
  // with the sign-in limits, so that guessing is as slow here as at POST /v1/auth/login.
  const passwordCheckLimits: RequestHandler[] = [
    limiter({ identifier: 'password-check-ip', windowMs, limit: perIp, what: 'password attempts' }),
    limiter({
      identifier: 'password-check-user',
      windowMs,
      limit: perEmail,
      what: 'password attempts',
      keyGenerator: (request) => `user:${request.caller?.kind === 'session' ? request.caller.userId : ''}`,
    }),
  ];
  // NOTE: reset requests reuse the LOGIN_RATE_LIMIT_* values with counters of their own.
  const resetRequestLimits: RequestHandler[] = [
    limiter({ identifier: 'password-reset-ip', windowMs, limit: perIp, what: 'password reset requests' }),
    limiter({
      identifier: 'password-reset-email',
      windowMs,
      limit: perEmail,
      what: 'password reset requests for this email address',
      keyGenerator: (request) => {
        const email: unknown = request.body?.email;
        return `email:${typeof email === 'string' ? normalizeEmail(email) : ''}`;
      },
    }),
  ];
  const linkLimit = limiter({
    identifier: 'account-link',
    windowMs: 60_000,
    limit: config.tokenRateLimitPerMinute,
    what: 'attempts with emailed links',
  });
  const signedIn: RequestHandler[] = [authenticate(db, config), requireSession];

  /** Throws 403 unless `password` is the person's current password. */
  async function checkCurrentPassword(user: UserRow, password: string): Promise<void> {
    const matches = await verifyPassword(user.password_hash ?? (await decoyHash), password);
    if (!user.password_hash || !matches) {
      throw new HttpError(403, 'current_password_incorrect', 'The current password is incorrect.', [
        { field: 'body.currentPassword', rule: 'must be the current password' },
      ]);
    }
  }

  async function loadUser(userId: string): Promise<UserRow> {
    const user: UserRow | undefined = await db('users').where({ id: userId }).first('id', 'email', 'password_hash');
    if (!user) {
      throw new HttpError(401, 'unauthorized', 'The session belongs to no person any more. Sign in again.');
    }
    return user;
  }

  // POST /v1/me/password: a new password for the signed-in person; their other sessions end.
  router.post('/v1/me/password', ...signedIn, ...passwordCheckLimits, async (request, response) => {
    const { userId, sessionId } = sessionOf(request);
    const body = parseOrThrow(passwordChangeRequestSchema, request.body, 'body');
    const user = await loadUser(userId);

    const problem = passwordProblem(body.newPassword, user.email);
    if (problem) {
      throw validationError([{ field: 'body.newPassword', rule: problem }]);
    }
    await checkCurrentPassword(user, body.currentPassword);
    if (body.newPassword === body.currentPassword) {
      throw validationError([{ field: 'body.newPassword', rule: 'must differ from the current password' }]);
    }
    const passwordHash = await hashPassword(body.newPassword);

    const changed = await db.transaction(async (trx) => {
      // Conditional on the hash just verified, so that a reset committed meanwhile is not overwritten.
      const updated = await trx('users')
        .where({ id: user.id, password_hash: user.password_hash })
        .update({ password_hash: passwordHash, updated_at: trx.fn.now() });
      if (updated === 0) {
        throw new HttpError(409, 'password_changed_meanwhile', 'The password was changed by another request meanwhile; sign in again with the new password.');
      }
      const sessionsRevoked = await revokeSessions(trx, user.id, 'password_changed', { exceptSessionId: sessionId });
      const cancelledEmailChanges = await cancelPendingEmailChanges(trx, user.id, 'password_changed');
      await recordAuditEvent(trx, {
        actorType: 'user',
        actorUserId: user.id,
        action: 'user.password_changed',
        targetUserId: user.id,
        accountId: null,
        environmentId: null,
        workflowId: null,
        details: { sessionId, sessionsRevoked },
        eventKey: `user.password_changed:${user.id}:${randomUUID()}`,
      });
      return { sessionsRevoked, cancelledEmailChanges };
    });

    signals.emailChangesEnded(changed.cancelledEmailChanges, 'cancelled', request.log);
    request.log.info({ userId, sessionsRevoked: changed.sessionsRevoked }, 'password changed');
    response.json({ sessionsRevoked: changed.sessionsRevoked });
  });

  // POST /v1/me/email: starts or replaces the signed-in person's email change.
  router.post('/v1/me/email', ...signedIn, ...passwordCheckLimits, async (request, response) => {
    const { userId, sessionId } = sessionOf(request);
    const body = parseOrThrow(emailChangeRequestSchema, request.body, 'body');
    const user = await loadUser(userId);

    if (normalizeEmail(body.newEmail) === normalizeEmail(user.email)) {
      throw validationError([{ field: 'body.newEmail', rule: 'must differ from the current email address' }]);
    }
    await checkCurrentPassword(user, body.currentPassword);

    // Whether another user has the address is checked only at confirmation. Rejecting it here would let
    // any signed-in member find out which addresses have accounts, in every tenant.
    const workflowId = emailChangeWorkflowId(userId);
    await temporal.workflow.signalWithStart(emailChangeWorkflow, {
      workflowId,
      taskQueue: config.temporal.taskQueue,
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: 'Email change',
      typedSearchAttributes: lifecycleSearchAttributes({ kind: 'email-change' }),
      args: [{ userId, ttlMs: config.emailChangeTtlMs }],
      signal: emailChangeRequestedSignal,
      signalArgs: [{ newEmail: body.newEmail, requestedBySessionId: sessionId }],
    });

    request.log.info({ userId, workflowId }, 'email change requested');
    response.status(202).json({
      status: 'pending',
      newEmail: body.newEmail,
      linkExpiresInSeconds: Math.floor(config.emailChangeTtlMs / 1000),
    });
  });

  // GET /email-changes/confirm: the page behind the confirmation link. It only reads, so that mail
  // scanners and a second click do not use the link up.
  router.get('/email-changes/confirm', linkLimit, async (request, response) => {
    noStore(response);
    const token = typeof request.query.token === 'string' ? request.query.token : '';
    const preview = await previewEmailChange(db, token);
    if (!preview) {
      response.status(410).type('html').send(deadLinkPage(EMAIL_CHANGE_LINK_INVALID));
      return;
    }
    response.type('html').send(emailChangeConfirmPage(token, preview));
  });

  // POST /v1/email-changes/confirm: for JSON callers and for the page's form. The link alone is enough:
  // it proves control of the new address, and the request came from a session that gave the password.
  router.post('/v1/email-changes/confirm', linkLimit, async (request, response) => {
    const fromForm = isFormPost(request);
    noStore(response);
    try {
      const body = parseOrThrow(emailChangeConfirmationSchema, request.body, 'body');
      const confirmation = await confirmEmailChange(db, body.token);
      if (confirmation.result === 'taken') {
        signals.emailChangesEnded([confirmation.change], 'failed', request.log);
        throw emailTaken();
      }

      signals.emailChangesEnded([confirmation.change], 'confirmed', request.log);
      signals.passwordResetsEnded(confirmation.supersededResets, 'superseded', request.log);
      request.log.info({ userId: confirmation.userId, emailChangeId: confirmation.change.id }, 'email change confirmed');
      if (fromForm) {
        response.type('html').send(emailChangedPage(confirmation.email));
        return;
      }
      response.json({ userId: confirmation.userId, email: confirmation.email });
    } catch (error) {
      if (!fromForm || !(error instanceof HttpError)) {
        throw error;
      }
      response.status(error.status).type('html');
      response.send(error.status === 410 ? deadLinkPage(EMAIL_CHANGE_LINK_INVALID) : failurePage('Email address not changed', error.message));
    }
  });

  // POST /v1/auth/password-reset: always the same 202. The look-up and the workflow start run after the
  // response is sent, so that its timing does not reveal whether the address has an account.
  router.post('/v1/auth/password-reset', ...resetRequestLimits, async (request, response) => {
    const body = parseOrThrow(passwordResetRequestSchema, request.body, 'body');
    response.status(202).json(PASSWORD_RESET_ACCEPTED);

    // NOTE: this process hands the request to Temporal after the response. If the process stops in
    // between, the request is lost and the person has to ask again.
    const log = request.log;
    void (async () => {
      const user = await db('users')
        .where({ email_normalized: normalizeEmail(body.email) })
        .whereNotNull('password_hash')
        .first('id');
      if (!user) {
        log.info('password reset requested for an address with no account or no password; nothing sent');
        return;
      }
      const workflowId = passwordResetWorkflowId(user.id);
      await temporal.workflow.signalWithStart(passwordResetWorkflow, {
        workflowId,
        taskQueue: config.temporal.taskQueue,
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        staticSummary: 'Password reset',
        typedSearchAttributes: lifecycleSearchAttributes({ kind: 'password-reset' }),
        args: [{ userId: user.id, ttlMs: config.passwordResetTtlMs }],
        signal: passwordResetRequestedSignal,
      });
      log.info({ userId: user.id, workflowId }, 'password reset requested');
    })().catch((error: unknown) => {
      log.error({ err: error }, 'could not start the password reset workflow');
    });
  });

  // GET /password-reset: the new-password form behind a reset link; it only reads.
  router.get('/password-reset', linkLimit, async (request, response) => {
    noStore(response);
    const token = typeof request.query.token === 'string' ? request.query.token : '';
    const preview = await previewPasswordReset(db, token);
    if (!preview) {
      response.status(410).type('html').send(deadLinkPage(PASSWORD_RESET_LINK_INVALID));
      return;
    }
    response.type('html').send(passwordResetPage(token, preview));
  });

  // POST /v1/auth/password-reset/confirm: for JSON callers and for the page's form.
  router.post('/v1/auth/password-reset/confirm', linkLimit, async (request, response) => {
    const fromForm = isFormPost(request);
    noStore(response);
    try {
      const body = parseOrThrow(passwordResetConfirmationSchema, request.body, 'body');
      const completed = await completePasswordReset(db, body.token, body.password);

      signals.passwordResetsEnded([completed.reset], 'used', request.log);
      signals.emailChangesEnded(completed.cancelledEmailChanges, 'cancelled', request.log);
      request.log.info({ userId: completed.userId, resetId: completed.reset.id, sessionsRevoked: completed.sessionsRevoked }, 'password reset');
      if (fromForm) {
        response.type('html').send(passwordResetDonePage());
        return;
      }
      response.json({ sessionsRevoked: completed.sessionsRevoked });
    } catch (error) {
      if (!fromForm || !(error instanceof HttpError)) {
        throw error;
      }
      // The form gets a page back: the same form with the problem, or the dead-link page.
      const token = typeof request.body?.token === 'string' ? request.body.token : '';
      const preview = error.status === 410 ? undefined : await previewPasswordReset(db, token);
      response.status(error.status).type('html');
      response.send(preview ? passwordResetPage(token, preview, error.message) : deadLinkPage(PASSWORD_RESET_LINK_INVALID));
    }
  });

  return router;
}
