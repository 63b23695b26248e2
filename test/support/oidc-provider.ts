import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';

import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import Provider from 'oidc-provider';

/** A person the local provider can sign in; the dev login form takes the `login` as the account id. */
export interface ProviderUser {
  email: string;
  emailVerified: boolean;
  /** Google's hosted-domain claim; omit for a provider that does not send it. */
  hostedDomain?: string;
}

export interface ProviderClient {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: Server | undefined): Promise<void> {
  if (!server) {
    return;
  }
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

/**
 * A real OpenID provider (`oidc-provider` v9) on loopback that replaces Okta or Google in tests. Its login
 * and consent screens are the package's development interactions: any login name is accepted and becomes
 * the account id, whose claims come from `users`. The signing key is generated here, per provider.
 */
export class LocalOpenIdProvider {
  readonly users = new Map<string, ProviderUser>();
  private server?: Server;
  issuer = '';

  constructor(private readonly clients: ProviderClient[]) {}

  async start(): Promise<void> {
    // The provider needs its issuer, which contains the port, so the server listens before it exists.
    const routing: { handler?: (request: IncomingMessage, response: ServerResponse) => void } = {};
    this.server = createServer((request, response) => routing.handler!(request, response));
    this.issuer = await listen(this.server);

    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const signingKey = { ...(await exportJWK(privateKey)), kid: `key-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };

    const provider = new Provider(this.issuer, {
      clients: this.clients.map((client) => ({
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: client.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      jwks: { keys: [signingKey] },
      cookies: { keys: [randomBytes(16).toString('hex')] },
      // Lifetimes in seconds; set so the provider does not warn about its defaults.
      ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 3600, IdToken: 600, Interaction: 600, Session: 3600 },
      claims: { openid: ['sub'], email: ['email', 'email_verified', 'hd'], profile: ['name'] },
      // Puts the scope's claims into the ID token, as Okta and Google do for the authorization code flow.
      conformIdTokenClaims: false,
      features: { devInteractions: { enabled: true } },
      findAccount: async (_context: unknown, accountId: string) => {
        const user = this.users.get(accountId);
        if (!user) {
          return undefined;
        }
        return {
          accountId,
          claims: async () => ({
            sub: accountId,
            email: user.email,
            email_verified: user.emailVerified,
            ...(user.hostedDomain ? { hd: user.hostedDomain } : {}),
          }),
        };
      },
    });
    routing.handler = provider.callback();
  }

  async stop(): Promise<void> {
    await close(this.server);
  }
}

/** What a crafted ID token should look like; each field overrides the correct value. */
export interface CraftedToken {
  claims?: Partial<JWTPayload> & Record<string, unknown>;
  /** Removes these claims after the overrides. */
  omit?: string[];
  /** Signs with a key the provider does not publish. */
  foreignKey?: boolean;
  /** Leaves out the `kid` header, while the JWKS lists two keys. */
  noKid?: boolean;
}

interface PendingCode {
  clientId: string;
  nonce: string;
  email: string;
  crafted: CraftedToken;
}

/**
 * A hand-made OpenID provider that misbehaves on purpose: it serves discovery, a JWKS with two keys,
 * and a token endpoint that returns whatever ID token the test crafted with `jose`. The authorization
 * endpoint is never visited; a test issues a code for the nonce it read from the authorization URL.
 */
export class CraftingOpenIdProvider {
  private server?: Server;
  issuer = '';
  private readonly codes = new Map<string, PendingCode>();
  private keys: { kid: string; privateKey: CryptoKey; publicJwk: JWK }[] = [];
  private foreignKey?: CryptoKey;
  /** Overrides the `issuer` in the discovery document, to test an issuer mismatch. */
  discoveryIssuer: string | undefined;
  /** Requests to the token endpoint, in order. */
  readonly tokenRequests: { authorization: string | undefined; body: URLSearchParams }[] = [];

  constructor(private readonly client: { clientId: string; clientSecret: string }) {}

  async start(): Promise<void> {
    for (let index = 0; index < 2; index += 1) {
      const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
      const kid = `crafted-${index}`;
      this.keys.push({ kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } });
    }
    this.foreignKey = (await generateKeyPair('RS256')).privateKey;
    this.server = createServer((request, response) => void this.handle(request, response));
    this.issuer = await listen(this.server);
  }

  async stop(): Promise<void> {
    await close(this.server);
  }

  /** Makes `code` redeemable once, for a token built from the nonce and email and the crafted changes. */
  issueCode(input: { nonce: string; email: string; crafted?: CraftedToken }): string {
    const code = randomBytes(16).toString('base64url');
    this.codes.set(code, { clientId: this.client.clientId, nonce: input.nonce, email: input.email, crafted: input.crafted ?? {} });
    return code;
  }

  private async idToken(pending: PendingCode): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const claims: Record<string, unknown> = {
      iss: this.issuer,
      aud: pending.clientId,
      sub: `subject-${pending.email}`,
      iat: now,
      exp: now + 300,
      nonce: pending.nonce,
      email: pending.email,
      email_verified: true,
      ...pending.crafted.claims,
    };
    for (const name of pending.crafted.omit ?? []) {
      delete claims[name];
    }
    const key = this.keys[0]!;
    const header = pending.crafted.noKid ? { alg: 'RS256' } : { alg: 'RS256', kid: key.kid };
    return new SignJWT(claims).setProtectedHeader(header).sign(pending.crafted.foreignKey ? this.foreignKey! : key.privateKey);
  }

  private json(response: ServerResponse, status: number, body: unknown): void {
    response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) {
      chunks.push(chunk as Buffer);
    }
    const path = new URL(request.url ?? '/', this.issuer).pathname;

    if (path === '/.well-known/openid-configuration') {
      this.json(response, 200, {
        issuer: this.discoveryIssuer ?? this.issuer,
        authorization_endpoint: `${this.issuer}/authorize`,
        token_endpoint: `${this.issuer}/token`,
        jwks_uri: `${this.issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
      });
      return;
    }
    if (path === '/jwks') {
      this.json(response, 200, { keys: this.keys.map((key) => key.publicJwk) });
      return;
    }
    if (path === '/token' && request.method === 'POST') {
      const body = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      this.tokenRequests.push({ authorization: request.headers.authorization, body });
      // client_secret_basic form-encodes both parts (RFC 6749, section 2.3.1) before base64.
      const basic = Buffer.from((request.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString('utf8');
      const [user, password] = basic.split(':').map((part) => decodeURIComponent(part.replace(/\+/g, ' ')));
      if (user !== this.client.clientId || password !== this.client.clientSecret) {
        this.json(response, 401, { error: 'invalid_client', error_description: 'client authentication failed' });
        return;
      }
      const pending = this.codes.get(body.get('code') ?? '');
      this.codes.delete(body.get('code') ?? '');
      if (!pending) {
        this.json(response, 400, { error: 'invalid_grant', error_description: 'grant request is invalid' });
        return;
      }
      this.json(response, 200, { access_token: randomBytes(16).toString('hex'), token_type: 'Bearer', expires_in: 300, id_token: await this.idToken(pending) });
      return;
    }
    response.writeHead(404).end();
  }
}

/** A cookie jar and redirect-following client for driving the app and a provider over real HTTP. */
export class Browser {
  private readonly cookies = new Map<string, Map<string, string>>();

  private store(url: URL, response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(';');
      const separator = pair!.indexOf('=');
      const name = pair!.slice(0, separator).trim();
      const value = pair!.slice(separator + 1).trim();
      const jar = this.cookies.get(url.host) ?? new Map<string, string>();
      const expired = attributes.some((attribute) => /^\s*(max-age=0|expires=thu, 01 jan 1970)/i.test(attribute));
      if (expired || value === '') {
        jar.delete(name);
      } else {
        jar.set(name, value);
      }
      this.cookies.set(url.host, jar);
    }
  }

  cookie(origin: string, name: string): string | undefined {
    return this.cookies.get(new URL(origin).host)?.get(name);
  }

  setCookie(origin: string, name: string, value: string): void {
    const host = new URL(origin).host;
    const jar = this.cookies.get(host) ?? new Map<string, string>();
    jar.set(name, value);
    this.cookies.set(host, jar);
  }

  /** Sends one request with the jar's cookies and follows no redirect. */
  async request(url: string, init: { method?: string; form?: Record<string, string> } = {}): Promise<Response> {
    const target = new URL(url);
    const jar = this.cookies.get(target.host);
    const headers: Record<string, string> = {};
    if (jar && jar.size > 0) {
      headers.cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
    }
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(target, { method: init.method ?? (body ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    this.store(target, response);
    return response;
  }

  /**
   * Follows redirects and meta refreshes, and submits the provider's development login (as `login`) and consent forms on
   * the way, until a page that is neither. At most 20 steps.
   */
  async follow(url: string, options: { login?: string; form?: Record<string, string> } = {}): Promise<{ url: string; status: number; text: string }> {
    let current = url;
    let response = await this.request(current, options.form ? { form: options.form } : {});
    for (let step = 0; step < 20; step += 1) {
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        current = new URL(location, current).href;
        response = await this.request(current);
        continue;
      }
      const text = await response.text();
      const refresh = /http-equiv="refresh" content="0;url=([^"]+)"/.exec(text)?.[1];
      if (refresh) {
        current = new URL(decodeEntities(refresh), current).href;
        response = await this.request(current);
        continue;
      }
      const prompt = /name="prompt" value="(login|consent)"/.exec(text)?.[1];
      const action = /<form[^>]*action="([^"]+)"/.exec(text)?.[1];
      if (!prompt || !action) {
        return { url: current, status: response.status, text };
      }
      const form: Record<string, string> = prompt === 'login' ? { prompt, login: options.login ?? '', password: 'any' } : { prompt };
      current = new URL(decodeEntities(action), current).href;
      response = await this.request(current, { form });
    }
    throw new Error(`more than 20 redirects or forms from ${url}`);
  }
}

/** Decodes the character references that the app's and the provider's pages use in attributes. */
export function decodeEntities(text: string): string {
  return text.replace(/&amp;/g, '&').replace(/&#(\d+);/g, (_all, code: string) => String.fromCharCode(Number(code)));
}

/** Reads the hidden inputs and the form action of the form that contains `buttonId`. */
export function formWithButton(html: string, buttonId: string): { action: string; fields: Record<string, string> } {
  const forms = html.split('<form').slice(1);
  const form = forms.find((candidate) => candidate.includes(`id="${buttonId}"`));
  if (!form) {
    throw new Error(`no form with button #${buttonId}`);
  }
  const action = /action="([^"]+)"/.exec(form)![1]!;
  const fields: Record<string, string> = {};
  for (const match of form.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields[match[1]!] = decodeEntities(match[2]!);
  }
  return { action, fields };
}
