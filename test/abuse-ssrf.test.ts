import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';

import { discoverProvider, SsoFailure } from '../lib/sso/oidc.js';
import { assertOutboundUrl, guardedFetch, OutboundUrlError } from '../lib/sso/outbound.js';
import { blockNonLoopbackConnections, type NetworkGuard } from './support/network-guard.js';

/**
 * The issuer fetch against addresses an attacker would aim it at. Every address below is a literal IP,
 * so the product's check needs no DNS, and the network guard stops any TCP connection outside loopback
 * before it starts: even a broken check sends nothing off this machine.
 */

const STRICT = { allowInsecure: false, timeoutMs: 2_000 };
const TEST_FLAG = { allowInsecure: true, timeoutMs: 2_000 };
const OIDC_STRICT = { ...STRICT, clockToleranceSeconds: 5 };
const OIDC_TEST_FLAG = { ...TEST_FLAG, clockToleranceSeconds: 5 };

const BLOCKED_ADDRESSES = [
  ['loopback', 'https://127.0.0.1'],
  ['loopback elsewhere in 127/8', 'https://127.10.0.1'],
  ['10/8', 'https://10.0.0.1'],
  ['172.16/12 start', 'https://172.16.0.1'],
  ['172.16/12 end', 'https://172.31.255.254'],
  ['192.168/16', 'https://192.168.1.1'],
  ['metadata', 'https://169.254.169.254'],
  ['link-local', 'https://169.254.10.10'],
  ['unspecified', 'https://0.0.0.0'],
  ['IPv6 loopback', 'https://[::1]'],
  ['IPv6 unique local', 'https://[fd00::1]'],
  ['IPv6 link-local', 'https://[fe80::1]'],
  ['IPv4-mapped loopback', 'https://[::ffff:127.0.0.1]'],
  ['IPv4-mapped metadata', 'https://[::ffff:169.254.169.254]'],
  ['IPv4-mapped private', 'https://[::ffff:10.0.0.1]'],
  ['NAT64 metadata', 'https://[64:ff9b::a9fe:a9fe]'],
] as const;

let guard: NetworkGuard;

beforeEach(() => {
  guard = blockNonLoopbackConnections();
});

afterEach(() => {
  guard.restore();
  // A connection the guard had to stop means the product's own check let the address through.
  expect(guard.blocked).toEqual([]);
});

describe('issuer address check', () => {
  test.each(BLOCKED_ADDRESSES)('rejects %s', async (_name, issuer) => {
    await expect(assertOutboundUrl(new URL(issuer), STRICT)).rejects.toThrow(OutboundUrlError);
    await expect(assertOutboundUrl(new URL(issuer), STRICT)).rejects.toThrow(/loopback, private, link-local or metadata/);
  });

  test.each(BLOCKED_ADDRESSES.filter(([name]) => !name.includes('loopback')))('test flag still rejects %s', async (_name, issuer) => {
    await expect(assertOutboundUrl(new URL(issuer), TEST_FLAG)).rejects.toThrow(OutboundUrlError);
  });

  test('test flag allows loopback only', async () => {
    await expect(assertOutboundUrl(new URL('http://127.0.0.1:8080'), TEST_FLAG)).resolves.toBeUndefined();
    await expect(assertOutboundUrl(new URL('http://[::1]:8080'), TEST_FLAG)).resolves.toBeUndefined();
    await expect(assertOutboundUrl(new URL('http://127.0.0.1:8080'), STRICT)).rejects.toThrow(OutboundUrlError);
    await expect(assertOutboundUrl(new URL('https://127.0.0.1:8080'), STRICT)).rejects.toThrow(OutboundUrlError);
  });

  test.each(BLOCKED_ADDRESSES)('discovery rejects %s', async (_name, issuer) => {
    const failure = await discoverProvider({ issuer, clientId: 'client', clientSecret: 'secret' }, OIDC_STRICT).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SsoFailure);
    expect((failure as SsoFailure).code).toBe('issuer_not_allowed');
    expect(guard.attempted).toEqual([]);
  });
});

describe('issuer redirects', () => {
  let server: Server;
  let issuer: string;
  /** Where the fake issuer redirects its discovery document; each test sets it. */
  let redirectTarget = '';
  const requests: string[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      requests.push(request.url ?? '');
      response.writeHead(302, { Location: redirectTarget }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    requests.length = 0;
  });

  test('guard records fetch connections', async () => {
    redirectTarget = '/elsewhere';
    const response = await fetch(`${issuer}/probe`, { redirect: 'manual' });
    expect(response.status).toBe(302);
    expect(guard.attempted).toContain('127.0.0.1');
  });

  test.each([
    ['metadata', 'http://169.254.169.254/latest/meta-data/'],
    ['private', 'https://10.0.0.1/.well-known/openid-configuration'],
    ['IPv6 unique local', 'https://[fd00::1]/.well-known/openid-configuration'],
    ['IPv4-mapped metadata', 'http://[::ffff:169.254.169.254]/'],
  ])('loopback issuer redirecting to %s', async (_name, target) => {
    redirectTarget = target;

    const failure = await discoverProvider({ issuer, clientId: 'client', clientSecret: 'secret' }, OIDC_TEST_FLAG).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(SsoFailure);
    expect((failure as SsoFailure).code).toBe('issuer_not_allowed');
    expect((failure as SsoFailure).message).toContain(`redirects to ${new URL(target).origin}, which is not allowed`);
    expect(requests).toEqual(['/.well-known/openid-configuration']);
    expect(guard.attempted.every((host) => host === '127.0.0.1')).toBe(true);
  });

  test('allowed redirect is not followed', async () => {
    redirectTarget = 'http://127.0.0.1:1/';

    const response = await guardedFetch(TEST_FLAG)(`${issuer}/.well-known/openid-configuration`, {});

    // With the test flag a loopback target passes the check, and the 302 comes back unfollowed.
    expect(response.status).toBe(302);
    expect(requests).toEqual(['/.well-known/openid-configuration']);
  });
});
