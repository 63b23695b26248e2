import net from 'node:net';

/** Error thrown instead of connecting to an address outside loopback. */
export class NonLoopbackConnectionError extends Error {
  constructor(readonly host: string) {
    super(`the test process tried to connect to ${host}, which is not a loopback address`);
    this.name = 'NonLoopbackConnectionError';
  }
}

export interface NetworkGuard {
  /** Hosts of every TCP connection attempt, loopback included, so a test can check that the guard records them. */
  attempted: string[];
  /** Non-loopback hosts whose connection the guard stopped. */
  blocked: string[];
  /** Puts the original net.Socket.prototype.connect back. */
  restore(): void;
}

function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  return bare === 'localhost' || bare === '::1' || bare.startsWith('127.') || bare === '::ffff:127.0.0.1';
}

function targetHost(args: unknown[]): string | undefined {
  const first = args[0];
  if (Array.isArray(first)) {
    // The internal form that net.connect() passes on: [options, callback].
    return targetHost(first);
  }
  if (typeof first === 'object' && first !== null) {
    const options = first as { host?: string; path?: string };
    return options.path !== undefined ? undefined : (options.host ?? 'localhost');
  }
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    return typeof args[1] === 'string' ? args[1] : 'localhost';
  }
  // A string that is not a port is a Unix socket path.
  return undefined;
}

/**
 * Makes every TCP connection of this process to a non-loopback host fail before a packet leaves, and
 * records the attempt. Node's fetch (undici), http and net all connect through net.Socket, so the guard
 * applies even if the code under test followed a redirect it should not.
 */
export function blockNonLoopbackConnections(): NetworkGuard {
  const guard: NetworkGuard = { attempted: [], blocked: [], restore: () => undefined };
  const original = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function guardedConnect(this: net.Socket, ...args: unknown[]) {
    const host = targetHost(args);
    if (host !== undefined) {
      guard.attempted.push(host);
    }
    if (host !== undefined && !isLoopback(host)) {
      guard.blocked.push(host);
      throw new NonLoopbackConnectionError(host);
    }
    return (original as (...values: unknown[]) => net.Socket).apply(this, args);
  } as typeof original;
  guard.restore = () => {
    net.Socket.prototype.connect = original;
  };
  return guard;
}
