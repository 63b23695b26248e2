import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../lib/passwords.js';
import { escapeHtml, layout as page } from './pages.js';

// The pages behind the email-change and password-reset links. Every value that reaches the HTML goes
// through escapeHtml. Rendering a page changes nothing; only the forms' POSTs do.

function problemParagraph(problem: string | undefined): string {
  return problem ? `<p class="error" role="alert">${escapeHtml(problem)}</p>` : '';
}

/** Renders the button that confirms an email change. */
export function emailChangeConfirmPage(token: string, preview: { newEmail: string; expiresAt: Date }, problem?: string): string {
  return page(
    'Confirm your new email address',
    `<h1>Confirm your new email address</h1>
<p>Confirm <strong>${escapeHtml(preview.newEmail)}</strong> as the address you sign in with. This link expires on ${escapeHtml(preview.expiresAt.toUTCString())}.</p>
${problemParagraph(problem)}
<form method="post" action="/v1/email-changes/confirm">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<button type="submit">Confirm the new address</button>
</form>`,
  );
}

export function emailChangedPage(email: string): string {
  return page(
    'Email address changed',
    `<h1>Email address changed</h1>
<p>You now sign in with <strong>${escapeHtml(email)}</strong>. You can close this page.</p>`,
  );
}

/** Renders the new-password form behind a reset link. */
export function passwordResetPage(token: string, preview: { email: string; expiresAt: Date }, problem?: string): string {
  // The username field has no name, so the form does not submit it; it is there for password managers.
  return page(
    'Choose a new password',
    `<h1>Choose a new password</h1>
<p>For <strong>${escapeHtml(preview.email)}</strong>. This link expires on ${escapeHtml(preview.expiresAt.toUTCString())}. Setting a new password signs out every session.</p>
${problemParagraph(problem)}
<form method="post" action="/v1/auth/password-reset/confirm">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<input type="email" value="${escapeHtml(preview.email)}" autocomplete="username" readonly hidden>
<label for="password">New password</label>
<input id="password" name="password" type="password" autocomplete="new-password" required minlength="${PASSWORD_MIN_LENGTH}" maxlength="${PASSWORD_MAX_LENGTH}">
<p class="hint">${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters, not your email address.</p>
<button type="submit">Set the new password</button>
</form>`,
  );
}

export function passwordResetDonePage(): string {
  return page(
    'Password changed',
    `<h1>Password changed</h1>
<p>Your new password is set and every session was signed out. Sign in again with the new password.</p>`,
  );
}

/** Renders the page for a link that no longer works, with the reason in `message`. */
export function deadLinkPage(message: string): string {
  return page('Link not valid', `<h1>This link no longer works</h1>\n<p>${escapeHtml(message)}</p>`);
}

/** Renders a failure that is not about the link, such as an address another person took meanwhile. */
export function failurePage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n<p>${escapeHtml(message)}</p>`);
}
