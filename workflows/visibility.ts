import { patched, upsertSearchAttributes } from '@temporalio/workflow';

import { memberStatusAttribute, type MemberStatus } from './search-attributes.js';

/**
 * Sets the `LifecycleMemberStatus` search attribute of the running workflow, so that operators can
 * filter by it in the Temporal Web UI. Histories recorded before the attribute existed have no upsert
 * command here, so they replay without it.
 */
export function showMemberStatus(status: MemberStatus): void {
  if (patched('member-status-search-attribute')) {
    upsertSearchAttributes([{ key: memberStatusAttribute, value: status }]);
  }
}

// Summaries: the Temporal Web UI shows them to everyone with access to the namespace, so email addresses
// are masked unless TEMPORAL_VISIBILITY_SHOW_EMAILS=true.

/** Masks the local part of an email address: `ada@example.com` becomes `a***@example.com`. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at <= 0) {
    return '***';
  }
  return `${email[0]}***${email.slice(at)}`;
}

export function visibleEmail(email: string, showEmails: boolean): string {
  return showEmails ? email : maskEmail(email);
}

/** Lists roles for a summary; a long list is cut so the summary stays one short line. */
export function summarizeRoles(roles: readonly string[]): string {
  const shown = roles.slice(0, 3).join(', ');
  return roles.length > 3 ? `${shown} and ${roles.length - 3} more` : shown;
}
