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

/** Loads members with their roles and latest invitation, in the order of the ids given. */
async function loadViews(db: Knex, membershipIds: string[]): Promise<MemberView[]> {
  if (membershipIds.length === 0) {
    return [];
  }
  const rows = await db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .whereIn('memberships.id', membershipIds)
    .select(
      'memberships.*',
      'users.email',
      db.raw(
        `(SELECT coalesce(array_agg(role_key ORDER BY role_key), '{}') FROM membership_roles
          WHERE membership_roles.membership_id = memberships.id) AS roles`,
      ),
    );
  const invitations = await db('invitations')
    .distinctOn('membership_id')
    .whereIn('membership_id', membershipIds)
    .orderBy([{ column: 'membership_id' }, { column: 'created_at', order: 'desc' }])
    .select('id', 'membership_id', 'status', 'expires_at', 'resend_count', 'last_sent_at', 'workflow_id');
  const invitationByMembership = new Map(invitations.map((invitation) => [invitation.membership_id, invitation]));
  const emails = await db('invitation_emails')
    .distinctOn('invitation_id')
    .whereIn(
      'invitation_id',
      invitations.map((invitation) => invitation.id),
    )
    .orderBy([{ column: 'invitation_id' }, { column: 'created_at', order: 'desc' }])
    .select('invitation_id', 'step', 'status', 'sent_at', 'rejected_at', 'rejection_reason');
  const emailByInvitation = new Map<string, InvitationEmailView>(
    emails.map((row) => [
      row.invitation_id,
      {
        step: row.step,
        status: row.status,
        sentAt: iso(row.sent_at),
        rejectedAt: iso(row.rejected_at),
        rejectionReason: row.rejection_reason,
      },
    ]),
  );

  const viewById = new Map<string, MemberView>();
  for (const row of rows) {
    const invitation = invitationByMembership.get(row.id);
    viewById.set(row.id, {
      id: row.user_id,
      email: row.email,
      status: row.status,
      roles: row.roles,
      membershipId: row.id,
      invitation: invitation
        ? {
            id: invitation.id,
            status: invitation.status,
            expiresAt: iso(invitation.expires_at)!,
            resendCount: invitation.resend_count,
            lastSentAt: iso(invitation.last_sent_at),
            workflowId: invitation.workflow_id,
            lastEmail: emailByInvitation.get(invitation.id) ?? null,
          }
        : null,
      invitedAt: iso(row.invited_at),
      activatedAt: iso(row.activated_at),
      createdAt: iso(row.created_at)!,
      updatedAt: iso(row.updated_at)!,
    });
  }
  return membershipIds.map((id) => viewById.get(id)).filter((view): view is MemberView => view !== undefined);
}

export async function getMemberByMembershipId(db: Knex, membershipId: string): Promise<MemberView | undefined> {
  const [view] = await loadViews(db, [membershipId]);
  return view;
}

export async function getMember(db: Knex, environmentId: string, userId: string): Promise<MemberView | undefined> {
  const membership = await db('memberships').where({ environment_id: environmentId, user_id: userId }).first('id');
  return membership ? getMemberByMembershipId(db, membership.id) : undefined;
}

/**
 * Builds the keyset query behind `listMembers`: up to `limit + 1` rows of membership id and normalized
 * email, in email order, after the cursor. Exported so that the benchmark can time and EXPLAIN the same SQL.
 */
// NOTE: the order comes from users.email_normalized, so a page's scan also reads the users of other
// environments whose emails sort near it, and BENCHMARKS.md measures what that costs. An email column on
// memberships with an index on (environment_id, email_normalized, id) would make every page cost the same.
export function memberPageQuery(
  db: Knex,
  environmentId: string,
  filter: MemberFilter,
  page: { limit: number; after?: Cursor | undefined },
) {
  const query = db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .where('memberships.environment_id', environmentId)
    .orderBy([{ column: 'users.email_normalized' }, { column: 'memberships.id' }])
    .limit(page.limit + 1)
    .select('memberships.id', 'users.email_normalized');

  if (filter.status) {
    query.where('memberships.status', filter.status);
  }
  if (filter.role) {
    query.whereExists(
      db('membership_roles').whereRaw('membership_roles.membership_id = memberships.id').where('role_key', filter.role),
    );
  }
  if (filter.emailPrefix) {
    query.whereRaw("users.email_normalized LIKE ? ESCAPE '\\'", [`${escapeLike(filter.emailPrefix)}%`]);
  }
  if (page.after) {
    // The row comparison spans two tables, so Postgres cannot start an index scan from it. The plain
    // bound on the email lets a deep page start its scan of users_email_normalized_unique at the cursor
    // instead of at the first user.
    query.where('users.email_normalized', '>=', page.after.email);
    query.whereRaw('(users.email_normalized, memberships.id) > (?, ?)', [page.after.email, page.after.membershipId]);
  }
  return query;
}

/** Lists an environment's members by email, a page at a time (keyset pagination on email and id). */
export async function listMembers(
  db: Knex,
  environmentId: string,
  filter: MemberFilter,
  page: { limit: number; after?: Cursor | undefined },
): Promise<MemberPage> {
  const query = memberPageQuery(db, environmentId, filter, page);
  const rows = await query;
  const hasMore = rows.length > page.limit;
  const pageRows = rows.slice(0, page.limit);
  const last = pageRows.at(-1);
  return {
    data: await loadViews(db, pageRows.map((row) => row.id)),
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
