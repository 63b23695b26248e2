import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * Guards the requests the server makes to an issuer that a customer typed in. Every URL must be https
 * and its host must resolve only to public addresses, so that an issuer URI cannot make the server read
 * loopback, private-network, link-local or cloud metadata endpoints.
 */

const blocked = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0', 96],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  blocked.addSubnet(network, prefix, 'ipv6');
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export class OutboundUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutboundUrlError';
  }
}

export interface OutboundPolicy {
  /** Allows http and loopback hosts, for tests only; configuration refuses it in production. */
  allowInsecure: boolean;
  timeoutMs: number;
}

function isBlockedAddress(address: string): boolean {
  const family = isIP(address);
  return family === 0 || blocked.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** Throws an OutboundUrlError unless `url` may be fetched under `policy`. */
export async function assertOutboundUrl(url: URL, policy: OutboundPolicy): Promise<void> {
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  if (policy.allowInsecure && LOOPBACK_HOSTS.has(url.hostname)) {
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new OutboundUrlError(`${url.origin} must use https.`);
    }
    return;
  }
  if (url.protocol !== 'https:') {
    throw new OutboundUrlError(`${url.origin} must use https.`);
  }
  if (url.username || url.password) {
    throw new OutboundUrlError('The URL must not contain a user name or password.');
  }

  const addresses = isIP(hostname) ? [{ address: hostname }] : await lookup(hostname, { all: true, verbatim: true });
  if (addresses.length === 0 || addresses.some(({ address }) => isBlockedAddress(address))) {
    throw new OutboundUrlError(
      `${url.hostname} resolves to a loopback, private, link-local or metadata address; the issuer must be reachable on the public internet.`,
    );
  }
}

/**
 * A fetch for openid-client that checks every URL it is asked for (discovery, token endpoint, JWKS)
 * and gives up after the policy's timeout. Redirects are never followed, and one whose target the
 * policy forbids becomes an OutboundUrlError that names it, instead of an unexplained 3xx response.
 * NOTE: the address is checked before the request and resolved again by fetch, so a DNS answer that
 * changes in between is not caught. Pinning the checked address needs a custom undici dispatcher.
 */
export function guardedFetch(policy: OutboundPolicy) {
  return async (url: string, options: RequestInit): Promise<Response> => {
    await assertOutboundUrl(new URL(url), policy);
    const timeout = AbortSignal.timeout(policy.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const response = await fetch(url, { ...options, signal, redirect: 'manual' });

    const location = response.status >= 300 && response.status < 400 ? response.headers.get('location') : null;
    if (location !== null) {
      const target = URL.parse(location, url);
      if (target === null) {
        throw new OutboundUrlError(`${new URL(url).origin} redirects to "${location}", which is not a valid URL.`);
      }
      try {
        await assertOutboundUrl(target, policy);
      } catch (error) {
        await response.body?.cancel();
        throw new OutboundUrlError(`${new URL(url).origin} redirects to ${target.origin}, which is not allowed: ${(error as Error).message}`);
      }
    }
    return response;
  };
}
