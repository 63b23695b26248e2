import { randomUUID } from 'node:crypto';

import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { CsvError, parse as parseCsv } from 'csv-parse/sync';
import express, { Router, type Request } from 'express';
import type { Knex } from 'knex';
import { z } from 'zod';

import { InvitationRejection } from '../../activities/invitations.js';
import { recordAuditEvent } from '../../db/audit.js';
import { USER_MANAGER_ROLES } from '../../db/roles.js';
import type { Config } from '../../lib/config.js';
import { emailSchema, normalizeEmail } from '../../lib/email-address.js';
import { lifecycleSearchAttributes } from '../../workflows/search-attributes.js';
import { deriveKey, emailFingerprint } from '../../lib/secrets.js';
import { visibleEmail } from '../../workflows/visibility.js';
import {
  batchInvitationWorkflow,
  batchWorkflowId,
  invitationGroupRecordedUpdate,
  invitationGroupWorkflow,
  type BatchRowStatus,
  type InvitationGroupInput,
  type InvitationGroupState,
} from '../../workflows/bulk.js';
import { authenticate, isAdministrator, requireEnvironmentMember, requireUserManager } from '../auth.js';
import type { Caller } from '../context.js';
import { HttpError, conflict, fieldName, notFound, parseOrThrow, validationError } from '../errors.js';
import { withIdempotency } from '../idempotency.js';
import { invitationWorkflowId } from '../invitation-workflows.js';
import { UUID_PATTERN, getMemberByMembershipId } from '../members.js';
import { memberSchema, roleListSchema } from '../schemas.js';
import type { RouterDependencies } from './dependencies.js';

/** Rows one batch may have; split larger lists into several batches. */
export const MAX_BATCH_ROWS = 1000;
/** Environments one invitation may list. */
export const MAX_GROUP_ENVIRONMENTS = 20;
/** Roles one batch row may list, as for a single invite. */
const MAX_ROW_ROLES = 50;
/** Maximum length of an address stored as given on an invalid row; the JSON schema rejects longer ones. */
const MAX_STORED_EMAIL_LENGTH = 1000;
/** The CSV body limit: 1,000 rows of long addresses and several roles fit with room to spare. */
const CSV_BODY_LIMIT = '1mb';
const CSV_HEADER = ['email', 'roles'];
const BATCH_ROW_STATUSES = ['queued', 'invited', 'already_member', 'invalid', 'failed'] as const satisfies readonly BatchRowStatus[];

// ---------------------------------------------------------------------------------------------------
// Request and response shapes; api/openapi-bulk.ts documents the routes with the same objects.
// ---------------------------------------------------------------------------------------------------

const environmentName = z.string().min(1, 'must not be empty').max(63, 'must be at most 63 characters');

export const groupInviteRequestSchema = z
  .strictObject({
    email: emailSchema.meta({ description: 'Address of the person to invite; at most 254 characters.', example: 'ada@example.com' }),
    environments: z
      .array(
        z.strictObject({
          environment: environmentName.meta({ description: 'Environment name, for example `sandbox`.' }),
          roles: roleListSchema,
        }),
      )
      .min(1, 'must list at least one environment')
      .max(MAX_GROUP_ENVIRONMENTS, `must list at most ${MAX_GROUP_ENVIRONMENTS} environments`)
      .superRefine((environments, context) => {
        const seen = new Set<string>();
        environments.forEach((item, index) => {
          if (seen.has(item.environment)) {
            context.addIssue({ code: 'custom', path: [index, 'environment'], message: `must not repeat environment "${item.environment}"` });
          }
          seen.add(item.environment);
        });
      })
      .meta({ description: 'Each environment once, with the roles the person gets there.' }),
  })
  .meta({ id: 'GroupInviteRequest' });

export const groupInvitationSchema = z
  .object({
    workflowId: z.string().meta({ description: 'The workflow that sends the one email, as listed in the Temporal Web UI.' }),
    userId: z.uuid(),
    email: z.string(),
    environments: z.array(z.object({ environment: z.string(), member: memberSchema })),
  })
  .meta({ id: 'GroupInvitation' });

export const batchRequestSchema = z
  .strictObject({
    rows: z
      .array(
        z.strictObject({
          email: z.string().max(MAX_STORED_EMAIL_LENGTH, `must be at most ${MAX_STORED_EMAIL_LENGTH} characters`),
          roles: z.array(z.string().max(200, 'must be at most 200 characters')).max(1000, 'must contain at most 1000 roles'),
        }),
      )
      .min(1, 'must contain at least one row')
      .meta({ description: `At most ${MAX_BATCH_ROWS} rows. A row with a bad address or bad roles becomes \`invalid\`; the others go ahead.` }),
  })
  .meta({ id: 'BatchRequest' });

const statusCounts = z.object({
  total: z.number().int(),
  queued: z.number().int(),
  invited: z.number().int(),
  already_member: z.number().int(),
  invalid: z.number().int(),
  failed: z.number().int(),
});

export const batchAcceptedSchema = z
  .object({
    batchId: z.uuid(),
    workflowId: z.string().meta({ description: 'The batch workflow, as listed in the Temporal Web UI.' }),
    status: z.literal('running'),
    counts: statusCounts.pick({ total: true, queued: true, invalid: true }),
  })
  .meta({ id: 'BatchAccepted' });

export const batchRowSchema = z
  .object({
    row: z.number().int().meta({ description: 'Position in the request, from 1; for CSV, the data record after the header.' }),
    email: z.string(),
    roles: z.array(z.string()),
    status: z.enum(BATCH_ROW_STATUSES),
    reason: z.string().nullable().meta({ description: 'Why the row is `invalid`, `already_member` or `failed`.' }),
    userId: z.uuid().nullable(),
    invitationId: z.uuid().nullable(),
  })
  .meta({ id: 'BatchRow' });

export const batchSchema = z
  .object({
    id: z.uuid(),
    workflowId: z.string(),
    environment: z.string(),
    status: z.enum(['running', 'completed']),
    counts: statusCounts,
    createdAt: z.iso.datetime(),
    completedAt: z.iso.datetime().nullable(),
    rows: z.array(batchRowSchema),
  })
  .meta({ id: 'Batch' });

export const batchQuerySchema = z.strictObject({
  status: z.enum(BATCH_ROW_STATUSES).optional().meta({ description: 'Only rows with this status.' }),
});

// ---------------------------------------------------------------------------------------------------
// Invitation to several environments
// ---------------------------------------------------------------------------------------------------

/** Returns the group workflow id, one per person and account; a keyed hash replaces the email. */
export function invitationGroupWorkflowId(idKey: Buffer, accountId: string, email: string): string {
  return `invitation-group-${accountId}-${emailFingerprint(idKey, normalizeEmail(email))}`;
}

interface AuthorizedEnvironment {
  environment: string;
  environmentId: string;
  /** The caller's roles there. */
  callerRoles: string[];
}

/**
 * Checks that the caller may manage users in every listed environment, and returns them. An API key
 * belongs to one environment, so a list of several needs a session. Unknown names get 400, but only
 * after the caller proved access to the account, so that callers cannot probe other tenants.
 */
async function authorizeEnvironments(db: Knex, caller: Caller, accountId: string, names: string[]): Promise<AuthorizedEnvironment[]> {
  const noAccess = new HttpError(403, 'forbidden', `You have no access to account "${accountId}".`);
  if (caller.kind === 'operator') {
    throw new HttpError(403, 'forbidden', 'Operator keys work only on /v1/operator routes.');
  }
  if (caller.kind === 'apiKey' && caller.accountId !== accountId) {
    throw new HttpError(403, 'forbidden', `This API key is not valid for account "${accountId}".`);
  }
  if (caller.kind === 'apiKey' && names.length > 1) {
    throw new HttpError(
      403,
      'forbidden',
      'An API key works in one environment only; to invite to several environments at once, use a session token from POST /v1/auth/login.',
    );
  }

  const memberships = await db('memberships')
    .join('environments', 'environments.id', 'memberships.environment_id')
    .where({ 'environments.account_id': accountId, 'memberships.user_id': caller.userId, 'memberships.status': 'active' })
    .select(
      'environments.id',
      'environments.name',
      db.raw('(SELECT coalesce(array_agg(role_key), \'{}\') FROM membership_roles WHERE membership_id = memberships.id) AS roles'),
    );
  if (memberships.length === 0) {
    throw noAccess;
  }

  const environments = await db('environments').where({ account_id: accountId }).whereIn('name', names).select('id', 'name');
  const idByName = new Map(environments.map((environment) => [environment.name as string, environment.id as string]));
  const unknown = names.flatMap((name, index) => (idByName.has(name) ? [] : [index]));
  if (unknown.length > 0) {
    throw validationError(
      unknown.map((index) => ({
        field: fieldName('body', ['environments', index, 'environment']),
        rule: `is not an environment of account "${accountId}": "${names[index]}"`,
      })),
    );
  }

  const membershipById = new Map(memberships.map((membership) => [membership.id as string, membership.roles as string[]]));
  const authorized = names.map((name) => {
    const environmentId = idByName.get(name)!;
    return { environment: name, environmentId, callerRoles: membershipById.get(environmentId) };
  });
  if (caller.kind === 'apiKey' && authorized[0]!.environmentId !== caller.environmentId) {
    throw new HttpError(403, 'forbidden', `This API key is not valid for account "${accountId}" environment "${names[0]}".`);
  }
  const denied = authorized.filter(
    (item) => !item.callerRoles?.some((role) => (USER_MANAGER_ROLES as readonly string[]).includes(role)),
  );
  if (denied.length > 0) {
    const list = denied.map((item) => `"${item.environment}"`).join(', ');
    throw new HttpError(
      403,
      'forbidden',
      `Managing users requires the administrator or user_administrator role in every listed environment; you lack it in ${list}.`,
      { environments: denied.map((item) => item.environment) },
    );
  }
  return authorized.map((item) => ({ ...item, callerRoles: item.callerRoles! }));
}

/** Rejects, naming the field, any role that is not in the catalog. */
async function assertRolesExist(db: Knex, environments: { roles: string[] }[]): Promise<void> {
  const known = new Set<string>(await db('roles').pluck('key'));
  const problems = environments.flatMap((item, environmentIndex) =>
    item.roles.flatMap((role, roleIndex) =>
      known.has(role)
        ? []
        : [{ field: fieldName('body', ['environments', environmentIndex, 'roles', roleIndex]), rule: `is not a known role: "${role}"; see GET /v1/roles` }],
    ),
  );
  if (problems.length > 0) {
    throw validationError(problems);
  }
}

/** Finds the conflicts the group would hit, up front, so that a rejected request starts nothing. */
async function findGroupConflicts(db: Knex, email: string, environments: AuthorizedEnvironment[]) {
  const emailNormalized = normalizeEmail(email);
  const ids = environments.map((item) => item.environmentId);
  const memberships = await db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .where('users.email_normalized', emailNormalized)
    .whereIn('memberships.environment_id', ids)
    .whereIn('memberships.status', ['active', 'deactivated'])
    .select('memberships.environment_id', 'memberships.status');
  const pending = await db('invitations')
    .where({ email_normalized: emailNormalized, status: 'pending' })
    .whereIn('environment_id', ids)
    .pluck('environment_id');

  const statusById = new Map(memberships.map((membership) => [membership.environment_id as string, membership.status as string]));
  return environments.flatMap(({ environment, environmentId }) => {
    const status = statusById.get(environmentId);
    if (status === 'active') {
      return [{ environment, code: 'already_member', message: `This person is already an active member of environment "${environment}".` }];
    }
    if (status === 'deactivated') {
      return [
        {
          environment,
          code: 'member_deactivated',
          message: `This person is a deactivated member of environment "${environment}"; reactivate them there instead.`,
        },
      ];
    }
    if (pending.includes(environmentId)) {
      return [{ environment, code: 'invitation_pending', message: `This person already has a pending invitation to environment "${environment}".` }];
    }
    return [];
  });
}

const GROUP_REJECTION_CODES: Record<string, string> = {
  [InvitationRejection.alreadyMember]: 'already_member',
  [InvitationRejection.memberDeactivated]: 'member_deactivated',
  [InvitationRejection.alreadyInvited]: 'invitation_pending',
};

/** Maps what the group workflow rejects to the API's statuses; undefined for anything unexpected. */
function translateGroupError(error: unknown): HttpError | undefined {
  if (error instanceof WorkflowExecutionAlreadyStartedError) {
    return conflict(
      'invitation_group_in_progress',
      'An invitation of this person to several environments of this account is still being set up; retry in a moment.',
    );
  }
  if (error instanceof WorkflowUpdateFailedError && error.cause instanceof ApplicationFailure) {
    // A conflict that arrived after the up-front check; the workflow has revoked what it had recorded.
    const code = GROUP_REJECTION_CODES[error.cause.type ?? ''];
    const [detail] = (error.cause.details ?? []) as [{ environment?: string }?];
    if (code && detail?.environment) {
      const message = `In environment "${detail.environment}": ${error.cause.message}`;
      return new HttpError(409, code, `${message} Nothing was invited.`, [{ environment: detail.environment, code, message }]);
    }
  }
  return undefined;
}

async function startInvitationGroup(temporal: Client, config: Config, workflowId: string, input: InvitationGroupInput): Promise<InvitationGroupState> {
  const startWorkflowOperation = new WithStartWorkflowOperation(invitationGroupWorkflow, {
    workflowId,
    taskQueue: config.temporal.taskQueue,
    // One group per person and account at a time; a finished one may be followed by another.
    workflowIdConflictPolicy: 'FAIL',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    staticSummary: `Invitation of ${visibleEmail(input.email, config.temporal.showEmails)} to ${input.accountId}: ${input.environments.map((item) => item.environment).join(', ')}`,
    typedSearchAttributes: lifecycleSearchAttributes({ kind: 'invitation-group', accountId: input.accountId }),
    args: [{ ...input, showEmails: config.temporal.showEmails }],
  });
  try {
    return await temporal.workflow.executeUpdateWithStart(invitationGroupRecordedUpdate, { startWorkflowOperation });
  } catch (error) {
    throw translateGroupError(error) ?? error;
  }
}

// ---------------------------------------------------------------------------------------------------
// Bulk onboarding: reading rows and checking them
// ---------------------------------------------------------------------------------------------------

interface SubmittedRow {
  email: string;
  roles: string[];
  /** Set when the CSV record did not have exactly two fields. */
  shapeProblem?: string;
}

interface CheckedRow {
  rowNumber: number;
  email: string;
  roles: string[];
  status: 'queued' | 'invalid';
  reason: string | null;
}

function tooManyRows(count: number, field: string): HttpError {
  return new HttpError(
    413,
    'too_many_rows',
    `A batch may have at most ${MAX_BATCH_ROWS} rows, and this one has ${count}; split it into several batches.`,
    [{ field, rule: `must contain at most ${MAX_BATCH_ROWS} rows` }],
  );
}

/** Reads a CSV body with the header `email,roles`, roles separated by `;`. */
function readCsvRows(text: string): SubmittedRow[] {
  // Postgres cannot store NUL characters; the JSON path rejects them in parseOrThrow.
  if (text.includes('\u0000')) {
    throw validationError([{ field: 'body', rule: 'must not contain NUL characters' }]);
  }
  let records: string[][];
  try {
    records = parseCsv(text, {
      bom: true,
      trim: true,
      skip_empty_lines: true,
      // A record with a missing or extra field becomes an invalid row instead of failing the whole body.
      relax_column_count: true,
      max_record_size: 64 * 1024,
    });
  } catch (error) {
    if (error instanceof CsvError) {
      throw validationError([{ field: 'body', rule: `must be valid CSV: ${error.message}` }]);
    }
    throw error;
  }

  const [header, ...data] = records;
  if (!header || header.map((name) => name.toLowerCase()).join(',') !== CSV_HEADER.join(',')) {
    throw validationError([{ field: 'body', rule: `must start with the header line "${CSV_HEADER.join(',')}"` }]);
  }
  if (data.length === 0) {
    throw validationError([{ field: 'body', rule: 'must contain at least one row after the header' }]);
  }
  if (data.length > MAX_BATCH_ROWS) {
    throw tooManyRows(data.length, 'body');
  }
  return data.map((fields) => ({
    email: fields[0] ?? '',
    roles: fields[1] === undefined || fields[1] === '' ? [] : fields[1].split(';').map((role) => role.trim()),
    ...(fields.length === CSV_HEADER.length ? {} : { shapeProblem: `row must have ${CSV_HEADER.length} fields (email,roles), not ${fields.length}` }),
  }));
}

function readBatchRows(request: Request): SubmittedRow[] {
  if (request.is('text/csv')) {
    if (typeof request.body !== 'string') {
      throw validationError([{ field: 'body', rule: 'is required' }]);
    }
    return readCsvRows(request.body);
  }
  const rows: unknown = (request.body as { rows?: unknown } | undefined)?.rows;
  if (Array.isArray(rows) && rows.length > MAX_BATCH_ROWS) {
    throw tooManyRows(rows.length, 'body.rows');
  }
  return parseOrThrow(batchRequestSchema, request.body, 'body').rows;
}

/**
 * Checks each row on its own, so that a bad row becomes `invalid` with its reason and the others go
 * ahead. An address may appear once per batch: the first row with it keeps it, and later rows are
 * invalid duplicates.
 */
function checkRows(rows: SubmittedRow[], knownRoles: Set<string>, callerIsAdministrator: boolean): CheckedRow[] {
  const firstRowByEmail = new Map<string, number>();
  return rows.map((row, index) => {
    const rowNumber = index + 1;
    const problems: string[] = [];
    if (row.shapeProblem) {
      problems.push(row.shapeProblem);
    }

    const email = emailSchema.safeParse(row.email);
    if (!email.success) {
      problems.push(`email ${email.error.issues[0]?.message ?? 'is invalid'}`);
    } else {
      const normalized = normalizeEmail(email.data);
      const first = firstRowByEmail.get(normalized);
      if (first !== undefined) {
        problems.push(`email duplicates row ${first}`);
      } else {
        firstRowByEmail.set(normalized, rowNumber);
      }
    }

    if (row.roles.length === 0) {
      problems.push('roles must contain at least one role');
    } else if (row.roles.length > MAX_ROW_ROLES) {
      problems.push(`roles must contain at most ${MAX_ROW_ROLES} roles`);
    } else {
      if (row.roles.some((role) => role === '')) {
        problems.push('roles must not contain empty role names');
      }
      const repeated = row.roles.filter((role, position) => role !== '' && row.roles.indexOf(role) !== position);
      if (repeated.length > 0) {
        problems.push(`roles must not contain the same role twice: "${repeated[0]}"`);
      }
      const unknown = row.roles.filter((role) => role !== '' && !knownRoles.has(role));
      if (unknown.length > 0) {
        problems.push(`roles contains unknown role(s) ${unknown.map((role) => `"${role}"`).join(', ')}; see GET /v1/roles`);
      }
      if (row.roles.includes('administrator') && !callerIsAdministrator) {
        problems.push('roles may include administrator only when an administrator submits the batch');
      }
    }

    return {
      rowNumber,
      email: email.success ? email.data : row.email.slice(0, MAX_STORED_EMAIL_LENGTH),
      roles: row.roles,
      status: problems.length === 0 ? 'queued' : 'invalid',
      reason: problems.length === 0 ? null : problems.join('; '),
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// Bulk onboarding: storing and reading batches
// ---------------------------------------------------------------------------------------------------

function iso(value: Date | string | null): string | null {
  return value === null ? null : new Date(value).toISOString();
}

async function loadBatch(db: Knex, environmentId: string, batchId: string, status: BatchRowStatus | undefined) {
  if (!UUID_PATTERN.test(batchId)) {
    throw notFound(`Batch ${JSON.stringify(batchId)}`);
  }
  const batch = await db('batches')
    .join('environments', 'environments.id', 'batches.environment_id')
    .where({ 'batches.id': batchId, 'batches.environment_id': environmentId })
    .first('batches.*', 'environments.name as environment');
  if (!batch) {
    throw notFound(`Batch ${batchId}`);
  }

  const counted: { status: BatchRowStatus; count: string }[] = await db('batch_rows')
    .where({ batch_id: batchId })
    .groupBy('status')
    .select('status')
    .count({ count: '*' });
  const counts = { total: batch.total_rows as number, queued: 0, invited: 0, already_member: 0, invalid: 0, failed: 0 };
  for (const { status: rowStatus, count } of counted) {
    counts[rowStatus] = Number(count);
  }

  const rowQuery = db('batch_rows').where({ batch_id: batchId }).orderBy('row_number');
  if (status) {
    rowQuery.where({ status });
  }
  const rows = await rowQuery.select('row_number', 'email', 'roles', 'status', 'error', 'user_id', 'invitation_id');
  return {
    id: batch.id,
    workflowId: batch.workflow_id,
    environment: batch.environment,
    status: batch.status,
    counts,
    createdAt: iso(batch.created_at)!,
    completedAt: iso(batch.completed_at),
    rows: rows.map((row) => ({
      row: row.row_number,
      email: row.email,
      roles: row.roles,
      status: row.status,
      reason: row.error,
      userId: row.user_id,
      invitationId: row.invitation_id,
    })),
  };
}

/** Bulk onboarding and invitations to several environments, mounted at `/v1/accounts/:accountId`. */
export function bulkRouter({ config, db, temporal }: RouterDependencies): Router {
  const router = Router({ mergeParams: true });
  const idKey = deriveKey(config.appSecret, 'workflow-id');
  // Each route authenticates on its own: a router-wide middleware would also run for the other
  // routers mounted under /v1/accounts/:accountId.
  const signedIn = authenticate(db, config);
  const userManager = [signedIn, requireEnvironmentMember(db), requireUserManager];

  router.post('/users', signedIn, async (request, response) => {
    const caller = request.caller!;
    const accountId = request.params.accountId as string;
    const body = parseOrThrow(groupInviteRequestSchema, request.body, 'body');
    const environments = await authorizeEnvironments(
      db,
      caller,
      accountId,
      body.environments.map((item) => item.environment),
    );
    await assertRolesExist(db, body.environments);
    const forbidden = environments.filter(
      (item, index) => body.environments[index]!.roles.includes('administrator') && !item.callerRoles.includes('administrator'),
    );
    if (forbidden.length > 0) {
      throw new HttpError(
        403,
        'forbidden',
        `Only an administrator may invite someone as an administrator; you are not one in ${forbidden.map((item) => `"${item.environment}"`).join(', ')}.`,
      );
    }

    const result = await withIdempotency(db, request, async () => {
      const conflicts = await findGroupConflicts(db, body.email, environments);
      if (conflicts.length > 0) {
        throw new HttpError(409, conflicts[0]!.code, `${conflicts.map((item) => item.message).join(' ')} Nothing was invited.`, conflicts);
      }

      const workflowId = invitationGroupWorkflowId(idKey, accountId, body.email);
      const state = await startInvitationGroup(temporal, config, workflowId, {
        accountId,
        email: body.email,
        invitedByUserId: caller.kind === 'operator' ? null : caller.userId,
        timing: config.invitation,
        environments: environments.map((item, index) => ({
          environment: item.environment,
          environmentId: item.environmentId,
          roles: body.environments[index]!.roles,
          invitationWorkflowId: invitationWorkflowId(idKey, accountId, item.environment, body.email),
        })),
      });
      request.log.info(
        { workflowId, invitationIds: state.invitations.map((invitation) => invitation.invitationId) },
        'invitation group started',
      );

      const members = await Promise.all(
        state.invitations.map(async (invitation) => ({
          environment: invitation.environment,
          member: (await getMemberByMembershipId(db, invitation.membershipId))!,
        })),
      );
      return { status: 202, body: { workflowId, userId: state.invitations[0]!.userId, email: body.email, environments: members } };
    });

    if (result.replayed) {
      response.setHeader('Idempotent-Replayed', 'true');
    }
    response.status(result.status).json(result.body);
  });

  router.post(
    '/environments/:environment/users\\:batch',
    ...userManager,
    // The app parses JSON bodies itself; CSV is read here, after the caller is known.
    express.text({ type: 'text/csv', limit: CSV_BODY_LIMIT }),
    async (request, response) => {
      const principal = request.principal!;
      const submitted = readBatchRows(request);
      const knownRoles = new Set<string>(await db('roles').pluck('key'));
      const rows = checkRows(submitted, knownRoles, isAdministrator(principal));

      const result = await withIdempotency(db, request, async () => {
        const batchId = randomUUID();
        const workflowId = batchWorkflowId(principal.accountId, principal.environment, batchId);
        const invalid = rows.filter((row) => row.status === 'invalid').length;
        const counts = { total: rows.length, queued: rows.length - invalid, invalid };

        // The workflow starts inside the transaction, so that a failed start stores nothing. If the commit
        // fails after the start, the workflow is terminated; its first activity waits for the commit.
        let started = false;
        try {
          await db.transaction(async (trx) => {
            await trx('batches').insert({
              id: batchId,
              account_id: principal.accountId,
              environment_id: principal.environmentId,
              created_by_user_id: principal.userId,
              total_rows: rows.length,
              workflow_id: workflowId,
            });
            await trx.batchInsert(
              'batch_rows',
              rows.map((row) => ({
                batch_id: batchId,
                row_number: row.rowNumber,
                email: row.email,
                roles: row.roles,
                status: row.status,
                error: row.reason,
              })),
              500,
            );
            await recordAuditEvent(trx, {
              actorType: 'user',
              actorUserId: principal.userId,
              action: 'batch.created',
              targetUserId: null,
              accountId: principal.accountId,
              environmentId: principal.environmentId,
              workflowId,
              details: { batchId, counts },
              eventKey: `batch.created:${batchId}`,
            });
            await temporal.workflow.start(batchInvitationWorkflow, {
              workflowId,
              taskQueue: config.temporal.taskQueue,
              workflowIdConflictPolicy: 'FAIL',
              staticSummary: `Batch of ${rows.length} invitations to ${principal.accountId}/${principal.environment}`,
              typedSearchAttributes: lifecycleSearchAttributes({
                kind: 'bulk-onboarding',
                accountId: principal.accountId,
                environment: principal.environment,
              }),
              args: [{ batchId, accountId: principal.accountId, environment: principal.environment, concurrency: config.batchConcurrency }],
            });
            started = true;
          });
        } catch (error) {
          if (started) {
            await temporal.workflow
              .getHandle(workflowId)
              .terminate('The batch could not be stored.')
              .catch((terminateError: unknown) => request.log.error({ err: terminateError, workflowId }, 'could not terminate the batch workflow'));
          }
          throw error;
        }

        request.log.info({ batchId, workflowId, ...counts }, 'batch started');
        return { status: 202, body: { batchId, workflowId, status: 'running', counts } };
      });

      const body = result.body as { batchId: string };
      response.setHeader('Location', `${request.baseUrl}/environments/${principal.environment}/batches/${body.batchId}`);
      if (result.replayed) {
        response.setHeader('Idempotent-Replayed', 'true');
      }
      response.status(result.status).json(result.body);
    },
  );

  router.get('/environments/:environment/batches/:batchId', ...userManager, async (request, response) => {
    const query = parseOrThrow(batchQuerySchema, request.query, 'query');
    response.json(await loadBatch(db, request.principal!.environmentId, request.params.batchId as string, query.status));
  });

  return router;
}
