import type { EmailMessage } from './sender.js';

export type InvitationEmailKind = 'invitation' | 'reminder' | 'resend';

export interface InvitationEmailInput {
  kind: InvitationEmailKind;
  to: string;
  accountName: string;
  environment: string;
  link: string;
  expiresAt: Date;
  invitedBy: string | null;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

export function invitationEmail(input: InvitationEmailInput): EmailMessage {
  const place = `${input.accountName} (${input.environment})`;
  const expiry = input.expiresAt.toUTCString();
  const subject =
    input.kind === 'reminder' ? `Reminder: your invitation to ${place} is waiting` : `You are invited to ${place}`;
  const opening =
    input.kind === 'reminder'
      ? `This is a reminder that you were invited to ${place} and have not accepted yet.`
      : `${input.invitedBy ?? 'An administrator'} invited you to ${place}.`;
  const closing = `The link works once and expires on ${expiry}. If you did not expect this invitation, ignore this email.`;

  const text = [opening, '', 'Accept the invitation and set your password here:', input.link, '', closing].join('\n');
  const html = [
    `<p>${escapeHtml(opening)}</p>`,
    `<p><a href="${escapeHtml(input.link)}">Accept the invitation</a></p>`,
    `<p>${escapeHtml(closing)}</p>`,
  ].join('\n');

  return { to: input.to, subject, text, html, categories: [`invitation-${input.kind}`] };
}
