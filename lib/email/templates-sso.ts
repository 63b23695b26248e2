import type { EmailMessage } from './sender.js';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

function render(to: string, subject: string, paragraphs: string[], link: { href: string; label: string } | undefined, category: string): EmailMessage {
  const textParts = [...paragraphs];
  const htmlParts = paragraphs.map((paragraph) => `<p>${escapeHtml(paragraph)}</p>`);
  if (link) {
    textParts.splice(1, 0, link.href);
    htmlParts.splice(1, 0, `<p><a href="${escapeHtml(link.href)}">${escapeHtml(link.label)}</a></p>`);
  }
  return { to, subject, text: textParts.join('\n\n'), html: htmlParts.join('\n'), categories: [category] };
}

export interface SsoOnboardingEmailInput {
  kind: 'initial' | 'reminder';
  to: string;
  accountName: string;
  link: string;
  expiresAt: Date;
}

/** Builds the email with the self-service link for setting up Okta single sign-on, or the reminder that repeats it. */
export function ssoOnboardingEmail(input: SsoOnboardingEmailInput): EmailMessage {
  const subject =
    input.kind === 'reminder'
      ? `Reminder: finish setting up single sign-on for ${input.accountName}`
      : `Set up single sign-on with Okta for ${input.accountName}`;
  const opening =
    input.kind === 'reminder'
      ? `The single sign-on setup for ${input.accountName} is waiting for you. Continue where you left off:`
      : `You were named as the contact for connecting ${input.accountName} to your Okta organization. The setup page walks you through it:`;
  return render(
    input.to,
    subject,
    [opening, `The link expires on ${input.expiresAt.toUTCString()}. Anyone with the link can change the connection, so do not forward it.`],
    { href: input.link, label: 'Open the single sign-on setup' },
    `sso-onboarding-${input.kind}`,
  );
}

/** Tells the platform operators that a customer finished the setup and the connection waits for approval. */
export function ssoApprovalRequestEmail(input: { to: string; accountId: string; accountName: string; issuer: string; approveUrl: string }): EmailMessage {
  return render(
    input.to,
    `SSO connection for ${input.accountName} waits for approval`,
    [
      `The customer contact of ${input.accountName} (${input.accountId}) tested the Okta connection with issuer ${input.issuer} and confirmed the setup.`,
      `Approve it with an operator key: POST ${input.approveUrl}`,
    ],
    undefined,
    'sso-approval-request',
  );
}
