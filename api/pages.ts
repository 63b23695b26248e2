import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../lib/passwords.js';
import type { InvitationPreview } from './acceptance.js';

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

/** Wraps a page body in the frame every page of the app shares. */
export function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)} · Lifecycle</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; color: #1f2328; }
  label { display: block; margin-top: 1rem; font-weight: 600; }
  input { width: 100%; box-sizing: border-box; padding: 0.5rem; margin-top: 0.25rem; font-size: 1rem; }
  button, .button { display: inline-block; margin-top: 1rem; padding: 0.6rem 1.2rem; font-size: 1rem; }
  code { background: #f6f8fa; padding: 0.1rem 0.3rem; word-break: break-all; }
  .hint { color: #59636e; font-size: 0.9rem; }
  .error { color: #b42318; }
  .ok { color: #1a7f37; }
  section { border-top: 1px solid #d1d9e0; margin-top: 2rem; }
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

/** Renders the set-password form behind an invitation link. Rendering it changes nothing. */
export function acceptPage(token: string, preview: InvitationPreview, problem?: string): string {
  const place = `${preview.accountName} (${preview.environment})`;
  const passwordFields = preview.needsPassword
    ? `<label for="password">Choose a password</label>
<input id="password" name="password" type="password" autocomplete="new-password" required minlength="${PASSWORD_MIN_LENGTH}" maxlength="${PASSWORD_MAX_LENGTH}">
<p class="hint">${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters, not your email address.</p>`
    : `<p class="hint">You already have a password from another membership; you will sign in with it.</p>`;
  return layout(
    'Accept invitation',
    `<h1>Join ${escapeHtml(place)}</h1>
<p>You were invited as <strong>${escapeHtml(preview.email)}</strong>. This link expires on ${escapeHtml(preview.expiresAt.toUTCString())}.</p>
${problem ? `<p class="error" role="alert">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/v1/invitations/accept">
<input type="hidden" name="token" value="${escapeHtml(token)}">
<input type="hidden" value="${escapeHtml(preview.email)}" autocomplete="username">
${passwordFields}
<button type="submit">Accept invitation</button>
</form>`,
  );
}

export function acceptedPage(place: string): string {
  return layout(
    'Invitation accepted',
    `<h1>Welcome</h1>
<p>You are now an active member of ${escapeHtml(place)}. You can close this page.</p>`,
  );
}

export function invalidLinkPage(message: string): string {
  return layout('Invitation link not valid', `<h1>This link no longer works</h1>\n<p>${escapeHtml(message)}</p>`);
}
