import { escapeHtml, layout } from '../pages.js';
import type { OnboardingView } from './store.js';

function hidden(name: string, value: string): string {
  return `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`;
}

export interface OnboardingPageInput {
  token: string;
  onboarding: OnboardingView;
  redirectUri: string;
  csrf: { credentials: string; test: string; confirm: string };
  notice?: { kind: 'error' | 'ok'; text: string };
}

/** Renders the self-service page behind the onboarding link. Rendering it changes nothing. */
export function onboardingPage(input: OnboardingPageInput): string {
  const { onboarding, token } = input;
  const connection = onboarding.connection;
  const notice = input.notice ? `<p class="${input.notice.kind}" role="${input.notice.kind === 'error' ? 'alert' : 'status'}">${escapeHtml(input.notice.text)}</p>` : '';

  if (onboarding.status === 'awaiting_approval') {
    return layout(
      'Single sign-on setup',
      `<h1>Single sign-on for ${escapeHtml(onboarding.accountName)}</h1>
${notice}
<p id="status">You confirmed the setup. Platform support will approve the connection; after that, members sign in with Okta.</p>`,
    );
  }

  const hasCredentials = Boolean(connection.clientId && connection.issuer && connection.hasSecret);
  const testState =
    connection.status === 'tested'
      ? '<p class="ok" id="test-status">The connection test passed.</p>'
      : connection.lastTestError
        ? `<p class="error" id="test-status">The last test failed: ${escapeHtml(connection.lastTestError)}</p>`
        : hasCredentials
          ? '<p id="test-status">Not tested yet.</p>'
          : '<p class="hint" id="test-status">Save the credentials first.</p>';

  return layout(
    'Single sign-on setup',
    `<h1>Single sign-on for ${escapeHtml(onboarding.accountName)}</h1>
<p>This page connects ${escapeHtml(onboarding.accountName)} to your Okta organization. The link expires on ${escapeHtml(onboarding.expiresAt.toUTCString())}.</p>
${notice}
<section>
<h2>1. Create the app integration in Okta</h2>
<ol>
<li>In the Okta Admin Console, open Applications &gt; Applications &gt; Create App Integration.</li>
<li>Choose <strong>OIDC - OpenID Connect</strong> and <strong>Web Application</strong>.</li>
<li>Keep the grant type <strong>Authorization Code</strong>.</li>
<li>Under Sign-in redirect URIs, enter exactly: <code id="redirect-uri">${escapeHtml(input.redirectUri)}</code></li>
<li>Assign the people or groups who should sign in, and save.</li>
</ol>
</section>
<section>
<h2>2. Enter the credentials</h2>
<form method="post" action="/v1/sso/onboarding/credentials">
${hidden('token', token)}
${hidden('csrfToken', input.csrf.credentials)}
<label for="clientId">Client ID</label>
<input id="clientId" name="clientId" required maxlength="255" autocomplete="off" value="${escapeHtml(connection.clientId ?? '')}">
<label for="clientSecret">Client secret</label>
<input id="clientSecret" name="clientSecret" type="password" maxlength="1000" autocomplete="off" ${connection.hasSecret ? 'placeholder="Stored; leave empty to keep it"' : 'required'}>
<label for="issuer">Issuer URI</label>
<input id="issuer" name="issuer" type="url" required maxlength="2000" placeholder="https://your-domain.okta.com" value="${escapeHtml(connection.issuer ?? '')}">
<p class="hint">The issuer is your Okta domain (or the issuer of the authorization server you use), starting with https://.</p>
<button type="submit" id="save-credentials">Save credentials</button>
</form>
</section>
<section>
<h2>3. Test the connection</h2>
${testState}
<p class="hint">You will sign in at Okta with your own account; the test passes when the ID token is valid and your email is verified.
If Okta shows an error about the redirect URI, add the URI from step 1 to the app integration.</p>
<form method="post" action="/v1/sso/onboarding/test">
${hidden('token', token)}
${hidden('csrfToken', input.csrf.test)}
<button type="submit" id="test-connection"${hasCredentials ? '' : ' disabled'}>Sign in to test the connection</button>
</form>
</section>
<section>
<h2>4. Confirm</h2>
<form method="post" action="/v1/sso/onboarding/confirm">
${hidden('token', token)}
${hidden('csrfToken', input.csrf.confirm)}
<button type="submit" id="confirm-setup"${connection.status === 'tested' ? '' : ' disabled'}>Confirm the setup is done</button>
</form>
</section>`,
  );
}

export function messagePage(title: string, message: string, link?: { href: string; label: string }): string {
  const back = link ? `\n<p><a id="back" href="${escapeHtml(link.href)}">${escapeHtml(link.label)}</a></p>` : '';
  return layout(title, `<h1>${escapeHtml(title)}</h1>\n<p id="message">${escapeHtml(message)}</p>${back}`);
}

/**
 * Renders the step from the setup form to the identity provider. A 303 from the form post would break in
 * browsers, because the page's CSP (helmet: form-action 'self') also covers redirects after a form post,
 * so this page navigates on its own instead.
 */
export function continueToProviderPage(url: string): string {
  return layout(
    'Continue to your identity provider',
    `<meta http-equiv="refresh" content="0;url=${escapeHtml(url)}">
<h1>Continue to your identity provider</h1>
<p><a id="continue-to-provider" href="${escapeHtml(url)}">Continue to sign in</a></p>`,
  );
}

export interface LoginOption {
  connectionId: string;
  label: string;
}

/** Renders the sign-in page: email first, then the account's SSO options and, where allowed, the password form. */
export function loginPage(input: { email?: string; options?: LoginOption[]; passwordAllowed?: boolean; problem?: string }): string {
  const problem = input.problem ? `<p class="error" role="alert">${escapeHtml(input.problem)}</p>` : '';
  if (input.email === undefined) {
    return layout(
      'Sign in',
      `<h1>Sign in</h1>
${problem}
<form method="get" action="/login">
<label for="email">Email address</label>
<input id="email" name="email" type="email" required maxlength="254" autocomplete="username">
<button type="submit" id="continue">Continue</button>
</form>`,
    );
  }

  const email = input.email;
  const buttons = (input.options ?? []).map(
    (option) =>
      `<p><a class="button" id="sso-${escapeHtml(option.connectionId)}" href="/v1/auth/sso/start?email=${encodeURIComponent(email)}&amp;connection=${encodeURIComponent(option.connectionId)}">${escapeHtml(option.label)}</a></p>`,
  );
  // POST /v1/auth/login responds to this form with a page and the session cookie, after checking the Origin.
  const password = input.passwordAllowed
    ? `<form method="post" action="/v1/auth/login">
${hidden('email', email)}
<label for="password">Password</label>
<input id="password" name="password" type="password" required autocomplete="current-password">
<button type="submit">Sign in with password</button>
</form>`
    : '';
  return layout(
    'Sign in',
    `<h1>Sign in</h1>
<p>Signing in as <strong>${escapeHtml(email)}</strong>. <a href="/login">Use another address</a></p>
${problem}
${buttons.join('\n')}
${password}`,
  );
}
