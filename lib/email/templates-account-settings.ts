import type { EmailMessage } from './sender.js';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

function paragraphs(lines: string[]): string {
  return lines.map((line) => `<p>${escapeHtml(line)}</p>`).join('\n');
}

/** Builds the email to the new address, whose link confirms an email change. */
export function emailChangeConfirmationEmail(input: { to: string; link: string; expiresAt: Date }): EmailMessage {
  const opening = 'You asked to use this address to sign in to Lifecycle.';
  const closing = `The link works once and expires on ${input.expiresAt.toUTCString()}. If you did not ask for this, ignore this email and nothing changes.`;
  const text = [opening, '', 'Confirm the new address here:', input.link, '', closing].join('\n');
  const html = [
    paragraphs([opening]),
    `<p><a href="${escapeHtml(input.link)}">Confirm the new address</a></p>`,
    paragraphs([closing]),
  ].join('\n');
  return { to: input.to, subject: 'Confirm your new sign-in email address', text, html, categories: ['email-change-confirmation'] };
}

/** Builds the notice to the old address that a change to another address was requested. It carries no link. */
export function emailChangeNoticeEmail(input: { to: string; newEmail: string; expiresAt: Date }): EmailMessage {
  const lines = [
    `Someone signed in to your Lifecycle account asked to change its sign-in email address from ${input.to} to ${input.newEmail}.`,
    `The change takes effect only if the new address confirms it before ${input.expiresAt.toUTCString()}.`,
    'If this was not you, change your password now: that cancels the pending change and signs out every other session.',
  ];
  return {
    to: input.to,
    subject: 'A change of your sign-in email address was requested',
    text: lines.join('\n\n'),
    html: paragraphs(lines),
    categories: ['email-change-notice'],
  };
}

/** Builds the email with a single-use link that sets a new password. */
export function passwordResetEmail(input: { to: string; link: string; expiresAt: Date }): EmailMessage {
  const opening = 'Someone asked to reset the password of the Lifecycle account with this email address.';
  const closing = `The link works once and expires on ${input.expiresAt.toUTCString()}. Setting a new password signs out every session. If you did not ask for this, ignore this email and your password stays as it is.`;
  const text = [opening, '', 'Choose a new password here:', input.link, '', closing].join('\n');
  const html = [
    paragraphs([opening]),
    `<p><a href="${escapeHtml(input.link)}">Choose a new password</a></p>`,
    paragraphs([closing]),
  ].join('\n');
  return { to: input.to, subject: 'Reset your password', text, html, categories: ['password-reset'] };
}
