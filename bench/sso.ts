import { performance } from 'node:perf_hooks';

import { sealSecret } from '../lib/sso/secret-box.js';
import { loadSsoConfig } from '../lib/sso-config.js';
import { Browser, CraftingOpenIdProvider } from '../test/support/oidc-provider.js';
import type { Cleanup } from './cleanup.js';
import { ErrorTally } from './http.js';
import type { BenchContext } from './invites.js';
import { BENCH_ACCOUNT } from './stack.js';
import { summarize, type Summary } from './stats.js';

const CLIENT = { clientId: 'bench-client', clientSecret: 'bench-client-secret-0123456789abcdef' };
const WARMUP_REQUESTS = 5;

export interface SsoResult {
  /** `GET /v1/auth/sso/callback`: code exchange with the provider, ID token check, session, page. */
  callback: Summary | undefined;
  /** The baseline: the provider's token endpoint alone, called with a fresh code from this process. */
  tokenEndpointOnly: Summary | undefined;
  errors: ErrorTally;
}

/**
 * Signs `emails` in through an Okta connection to a local OpenID provider, one after another, and times
 * the callback request against a bare call of the provider's token endpoint. The provider is the test
 * suite's CraftingOpenIdProvider: discovery, JWKS and a token endpoint that signs real RS256 ID tokens,
 * with codes issued in process in place of its authorization page.
 */
export async function runSso(context: BenchContext, input: { emails: string[]; requests: number; cleanup: Cleanup }): Promise<SsoResult> {
  const { stack, signal } = context;
  const errors = new ErrorTally();
  const provider = new CraftingOpenIdProvider(CLIENT);
  await provider.start();
  input.cleanup.add('local OpenID provider', 5_000, () => provider.stop());

  const [{ id: connectionId }] = await stack.db('sso_connections')
    .insert({ account_id: BENCH_ACCOUNT.id, type: 'okta', status: 'active', client_id: CLIENT.clientId, issuer: provider.issuer, credentials_version: 1 })
    .returning('id');
  const sealed = sealSecret(loadSsoConfig().encryptionKeys, CLIENT.clientSecret, connectionId);
  await stack.db('sso_connections').where({ id: connectionId }).update({ client_secret_ciphertext: sealed.ciphertext, client_secret_key_id: sealed.keyId });

  const signIn = async (email: string): Promise<number | undefined> => {
    const browser = new Browser();
    const start = await browser.request(`${stack.baseUrl}/v1/auth/sso/start?email=${encodeURIComponent(email)}&connection=${connectionId}`);
    await start.arrayBuffer();
    const location = start.headers.get('location');
    if (start.status !== 303 || !location) {
      errors.add(`start HTTP ${start.status}`, location);
      return undefined;
    }
    const authorization = new URL(location);
    const code = provider.issueCode({ nonce: authorization.searchParams.get('nonce') ?? '', email });
    const state = authorization.searchParams.get('state') ?? '';

    const startedAt = performance.now();
    const callback = await browser.request(`${stack.baseUrl}/v1/auth/sso/callback?${new URLSearchParams({ code, state })}`);
    const page = await callback.text();
    const duration = performance.now() - startedAt;
    if (callback.status !== 200 || !browser.cookie(stack.baseUrl, 'lc_session')) {
      errors.add(`callback HTTP ${callback.status}`, /<p id="message">([^<]*)<\/p>/.exec(page)?.[1] ?? page.slice(0, 200));
      return undefined;
    }
    return duration;
  };

  const exchangeOnly = async (email: string): Promise<number> => {
    const code = provider.issueCode({ nonce: 'baseline-nonce', email });
    const startedAt = performance.now();
    const response = await fetch(`${provider.issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT.clientId}:${CLIENT.clientSecret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: `${stack.baseUrl}/v1/auth/sso/callback` }),
      signal,
    });
    await response.arrayBuffer();
    return performance.now() - startedAt;
  };

  const callbacks: number[] = [];
  const exchanges: number[] = [];
  for (let request = 0; request < WARMUP_REQUESTS + input.requests && !signal.aborted; request += 1) {
    const email = input.emails[request % input.emails.length]!;
    const duration = await signIn(email);
    const exchange = await exchangeOnly(email);
    if (request >= WARMUP_REQUESTS) {
      if (duration !== undefined) {
        callbacks.push(duration);
      }
      exchanges.push(exchange);
    }
  }
  return { callback: summarize(callbacks), tokenEndpointOnly: summarize(exchanges), errors };
}
