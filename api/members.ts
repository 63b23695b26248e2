import type { Knex } from 'knex';

import { MEMBERSHIP_STATUSES, type MembershipStatus } from '../db/models/index.js';
import { notFound } from './errors.js';

export interface MemberView {
  id: string;
  email: string;
  status: MembershipStatus;
  roles: string[];
  membershipId: string;
  invitation: {
    id: string;
    status: string;
    expiresAt: string;
    resendCount: number;
    lastSentAt: string | null;
    workflowId: string;
    lastEmail: InvitationEmailView | null;
  } | null;
  invitedAt: string | null;
  activatedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The latest email of an invitation: whether the provider took it, or why it rejected it for good. */
export interface InvitationEmailView {
  step: string;
  status: 'sending' | 'sent' | 'rejected';
  sentAt: string | null;
  rejectedAt: string | null;
  /** The provider's reason, such as "Does not contain a valid address."; null unless rejected. */
  rejectionReason: string | null;
}

export interface MemberFilter {
  status?: MembershipStatus | undefined;
  role?: string | undefined;
  /** Prefix of the normalized email. */
  emailPrefix?: string | undefined;
}

export interface MemberPage {
  data: MemberView[];
  nextCursor: string | null;
}

export interface Cursor {
  email: string;
  membershipId: string;
}

export const MEMBER_STATUSES = MEMBERSHIP_STATUSES;

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function iso(value: Date | string | null): string | null {
  return value === null ? null : new Date(value).toISOString();
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.email, cursor.membershipId])).toString('base64url');
}

/** Returns the decoded cursor, or undefined when it was not made by encodeCursor. */
export function decodeCursor(text: string): Cursor | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && value.every((part) => typeof part === 'string')) {
      const [email, membershipId] = value as [string, string];
      if (UUID_PATTERN.test(membershipId) && !email.includes('\u0000')) {
        return { email, membershipId };
      }
    }
  } catch {
    // Falls through to undefined, and the caller responds with 400.
  }
  return undefined;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (character) => `\\${character}`);
}

/** Selects, as `roles`, the sorted role keys of the membership whose id is in `column`. */
export function rolesOf(db: Knex, column: string): Knex.Raw {
  return db.raw(
    `(SELECT coalesce(array_agg(role_key ORDER BY role_key), '{}') FROM membership_roles WHERE membership_id = ??) AS roles`,
    [column],
  );
}

/**
 * Columns of `memberships` that a member view needs. The page query reads them in its range scan of
 * memberships, so the rest of a view takes look-ups by key: the user, the roles and the invitation.
 */
const MEMBERSHIP_COLUMNS = [
  'id',
  'user_id',
  'email_normalized',
  'status',
  'invited_at',
  'activated_at',
  'created_at',
  'updated_at',
] as const;

/**
 * Wraps a query of membership rows (the MEMBERSHIP_COLUMNS) in one that adds each member's email as
 * typed, roles, latest invitation and that invitation's latest email, keeping the rows in email order.
 * Every join is a look-up by key per row, so the cost grows with the rows of `memberships`, not the tables.
 */
function selectMemberViews(db: Knex, memberships: Knex.QueryBuilder) {
  return db
    .from(memberships.as('page'))
    .join('users', 'users.id', 'page.user_id')
    .joinRaw(
      `LEFT JOIN LATERAL (
         SELECT id, status, expires_at, resend_count, last_sent_at, workflow_id FROM invitations
         WHERE invitations.membership_id = page.id ORDER BY created_at DESC LIMIT 1
       ) AS invitation ON true`,
    )
    .joinRaw(
      `LEFT JOIN LATERAL (
         SELECT step, status, sent_at, rejected_at, rejection_reason FROM invitation_emails
         WHERE invitation_emails.invitation_id = invitation.id ORDER BY created_at DESC LIMIT 1
       ) AS invitation_email ON true`,
    )
    .orderBy([{ column: 'page.email_normalized' }, { column: 'page.id' }])
    .select(
      'page.*',
      'users.email',
      rolesOf(db, 'page.id'),
      'invitation.id as invitation_id',
      'invitation.status as invitation_status',
      'invitation.expires_at as invitation_expires_at',
      'invitation.resend_count as invitation_resend_count',
      'invitation.last_sent_at as invitation_last_sent_at',
      'invitation.workflow_id as invitation_workflow_id',
      'invitation_email.step as email_step',
      'invitation_email.status as email_status',
      'invitation_email.sent_at as email_sent_at',
      'invitation_email.rejected_at as email_rejected_at',
      'invitation_email.rejection_reason as email_rejection_reason',
    );
}

/** Builds the view of a row of `selectMemberViews`. */
function toMemberView(row: MemberViewRow): MemberView {
  return {
    id: row.user_id,
    email: row.email,
    status: row.status,
    roles: row.roles,
    membershipId: row.id,
    invitation:
      row.invitation_id === null
        ? null
        : {
            id: row.invitation_id,
            status: row.invitation_status!,
            expiresAt: iso(row.invitation_expires_at)!,
            resendCount: row.invitation_resend_count!,
            lastSentAt: iso(row.invitation_last_sent_at),
            workflowId: row.invitation_workflow_id!,
            lastEmail:
              row.email_step === null
                ? null
                : {
                    step: row.email_step,
                    status: row.email_status!,
                    sentAt: iso(row.email_sent_at),
                    rejectedAt: iso(row.email_rejected_at),
                    rejectionReason: row.email_rejection_reason,
                  },
          },
    invitedAt: iso(row.invited_at),
    activatedAt: iso(row.activated_at),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

/** A row of `selectMemberViews`. The invitation and email columns are null when the member has none. */
interface MemberViewRow {
  id: string;
  user_id: string;
  email_normalized: string;
  email: string;
  status: MembershipStatus;
  roles: string[];
  invited_at: Date | null;
  activated_at: Date | null;
  created_at: Date;
  updated_at: Date;
  invitation_id: string | null;
  invitation_status: string | null;
  invitation_expires_at: Date | null;
  invitation_resend_count: number | null;
  invitation_last_sent_at: Date | null;
  invitation_workflow_id: string | null;
  email_step: string | null;
  email_status: InvitationEmailView['status'] | null;
  email_sent_at: Date | null;
  email_rejected_at: Date | null;
  email_rejection_reason: string | null;
}

export async function getMemberByMembershipId(db: Knex, membershipId: string): Promise<MemberView | undefined> {
  const [row] = await selectMemberViews(db, db('memberships').where({ id: membershipId }).select(MEMBERSHIP_COLUMNS));
  return row ? toMemberView(row) : undefined;
}

export async function getMember(db: Knex, environmentId: string, userId: string): Promise<MemberView | undefined> {
  const memberships = db('memberships').where({ environment_id: environmentId, user_id: userId }).select(MEMBERSHIP_COLUMNS);
  const [row] = await selectMemberViews(db, memberships);
  return row ? toMemberView(row) : undefined;
}

/**
 * Builds the one query behind `listMembers`: up to `limit + 1` members after the cursor, in order of
 * (memberships.email_normalized, memberships.id), with everything their views need. Exported so that
 * the benchmark can time and EXPLAIN the same SQL.
 *
 * Without a filter the page is one range scan of memberships_environment_email_index, and with a status
 * filter one of memberships_environment_status_email_index, starting at the cursor and stopping after
 * `limit + 1` rows, so a deep page costs what the first one does.
 */
// NOTE: the role filter and the email prefix are checked row by row during that scan. A role or a prefix
// that few members of a large environment match makes the scan read many rows to fill a page.
export function memberPageQuery(
  db: Knex,
  environmentId: string,
  filter: MemberFilter,
  page: { limit: number; after?: Cursor | undefined },
) {
  const memberships = db('memberships')
    .where('memberships.environment_id', environmentId)
    .orderBy([{ column: 'memberships.email_normalized' }, { column: 'memberships.id' }])
    .limit(page.limit + 1)
    .select(MEMBERSHIP_COLUMNS.map((column) => `memberships.${column}`));

  if (filter.status) {
    memberships.where('memberships.status', filter.status);
  }
  if (filter.role) {
    memberships.whereExists(
      db('membership_roles').whereRaw('membership_roles.membership_id = memberships.id').where('role_key', filter.role),
    );
  }
  if (filter.emailPrefix) {
    memberships.whereRaw("memberships.email_normalized LIKE ? ESCAPE '\\'", [`${escapeLike(filter.emailPrefix)}%`]);
  }
  if (page.after) {
    memberships.whereRaw('(memberships.email_normalized, memberships.id) > (?, ?)', [page.after.email, page.after.membershipId]);
  }
  return selectMemberViews(db, memberships);
}

/** Lists an environment's members by email, a page at a time (keyset pagination on email and id). */
export async function listMembers(
  db: Knex,
  environmentId: string,
  filter: MemberFilter,
  page: { limit: number; after?: Cursor | undefined },
): Promise<MemberPage> {
  const rows: MemberViewRow[] = await memberPageQuery(db, environmentId, filter, page);
  const hasMore = rows.length > page.limit;
  const pageRows = rows.slice(0, page.limit);
  const last = pageRows.at(-1);
  return {
    data: pageRows.map(toMemberView),
    nextCursor: hasMore && last ? encodeCursor({ email: last.email_normalized, membershipId: last.id }) : null,
  };
}

/** Throws 404 for a user id that is not a UUID, which no member can have, so that it reaches no query. */
export function assertUserId(userId: string): void {
  if (!UUID_PATTERN.test(userId)) {
    throw notFound(`User ${JSON.stringify(userId)}`);
  }
}

/** Returns the member of the environment with this user id, or throws 404. */
export async function findMemberOrThrow(db: Knex, environmentId: string, userId: string): Promise<MemberView> {
  assertUserId(userId);
  const member = await getMember(db, environmentId, userId);
  if (!member) {
    throw notFound(`User ${userId}`);
  }
  return member;
}
