import type { EmailMessage } from './sender.js';

export interface InvitationGroupLink {
  environment: string;
  link: string;
  expiresAt: Date;
}

export interface InvitationGroupEmailInput {
  to: string;
  accountName: string;
  invitedBy: string | null;
  /** One entry per environment, in the order the email lists them. */
  invitations: InvitationGroupLink[];
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

/**
 * Builds the one email of an invitation to several environments of an account. Each environment has
 * its own link, because each is a separate invitation that is accepted, resent or revoked on its own.
 */
export function invitationGroupEmail(input: InvitationGroupEmailInput): EmailMessage {
  const names = input.invitations.map((invitation) => invitation.environment);
  const subject = `You are invited to ${input.accountName} (${names.join(', ')})`;
  const opening = `${input.invitedBy ?? 'An administrator'} invited you to ${input.accountName}, in ${names.length === 1 ? 'one environment' : `${names.length} environments`}.`;
  const closing =
    'Each link works once and makes you a member of that environment only. If you did not expect this invitation, ignore this email.';

  const textLines = [opening, ''];
  for (const invitation of input.invitations) {
    textLines.push(`${invitation.environment} (the link expires on ${invitation.expiresAt.toUTCString()}):`, invitation.link, '');
  }
  textLines.push(closing);

  const items = input.invitations.map(
    (invitation) =>
      `<li><a href="${escapeHtml(invitation.link)}">Accept the invitation to ${escapeHtml(invitation.environment)}</a>` +
      ` (expires on ${escapeHtml(invitation.expiresAt.toUTCString())})</li>`,
  );
  const html = [`<p>${escapeHtml(opening)}</p>`, '<ul>', ...items, '</ul>', `<p>${escapeHtml(closing)}</p>`].join('\n');

  return { to: input.to, subject, text: textLines.join('\n'), html, categories: ['invitation-group'] };
}
