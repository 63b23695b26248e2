import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy on loopback between the product and Postgres, so that a test can take the database
 * away without stopping the shared server. `cut()` resets every open connection and refuses new ones,
 * as a restarting Postgres does; `restore()` accepts connections again on the same port.
 */
export class TcpProxy {
  private server?: Server;
  private port = 0;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** A proxy to the server of a postgres:// URL; call `start()` before `proxiedUrl()`. */
  static forDatabaseUrl(url: string): TcpProxy {
    const target = new URL(url);
    return new TcpProxy(target.hostname, Number(target.port || 5432));
  }

  /** Returns `url` with this proxy's host and port in place of the server's. */
  proxiedUrl(url: string): string {
    const proxied = new URL(url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(this.port);
    return proxied.toString();
  }

  /** Listens on a free port the first time and on the same port after a cut. */
  async start(): Promise<void> {
    const server = createServer((client) => this.forward(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Closes the listener, so new connections are refused, and resets every connection in flight. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const socket of this.sockets) {
      socket.resetAndDestroy();
    }
    this.sockets.clear();
    await closed;
  }

  async restore(): Promise<void> {
    if (!this.server) {
      await this.start();
    }
  }

  async stop(): Promise<void> {
    await this.cut();
  }

  private forward(client: Socket): void {
    const upstream = connect({ host: this.targetHost, port: this.targetPort });
    this.sockets.add(client);
    this.sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
