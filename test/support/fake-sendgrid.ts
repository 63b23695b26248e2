import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request that reached the fake, as the real `@sendgrid/mail` client sent it. */
export interface ReceivedMail {
  authorization: string | undefined;
  body: {
    personalizations: { to: { email: string }[] }[];
    from: { email: string };
    subject: string;
    content: { type: string; value: string }[];
    categories?: string[];
  };
  /** HTTP status the fake responded with; only 202 counts as delivered. */
  status: number;
}

/** An error as SendGrid's v3 API reports it in `{ "errors": [...] }`. */
export interface SendgridError {
  message: string;
  field?: string;
}

export interface FailureOptions {
  /** Sent as the Retry-After header, in seconds. */
  retryAfterSeconds?: number;
  /** The body's `errors`; a generic error when absent. */
  errors?: SendgridError[];
}

type Behaviour = { status: number; options?: FailureOptions } | { hold: true };

/** SendGrid's response to an invalid recipient address, as its v3 API documents it. */
export const INVALID_RECIPIENT_ERROR: SendgridError = {
  message: 'Does not contain a valid address.',
  field: 'personalizations.0.to.0.email',
};

/**
 * A stand-in for SendGrid's v3 Mail Send endpoint on loopback. It records every request and responds
 * 202 with an X-Message-Id, unless a test queued another status or asked it to hold a request open.
 */
export class FakeSendgrid {
  readonly received: ReceivedMail[] = [];
  private readonly queued: Behaviour[] = [];
  private readonly held: { response: ServerResponse; mail: ReceivedMail }[] = [];
  private readonly waiters: (() => void)[] = [];
  private server?: Server;
  private sequence = 0;

  get url(): string {
    const { port } = this.server!.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Emails the fake accepted (HTTP 202), in order. */
  get delivered(): ReceivedMail[] {
    return this.received.filter((mail) => mail.status === 202);
  }

  deliveredTo(email: string): ReceivedMail[] {
    return this.delivered.filter((mail) => mail.body.personalizations[0]?.to[0]?.email === email);
  }

  /** Responds to the next request with `status` instead of 202, optionally with Retry-After and SendGrid errors. */
  failNext(status: number, options?: FailureOptions): void {
    this.queued.push(options ? { status, options } : { status });
  }

  /**
   * Keeps the next request open until `releaseHeld` is called. Until then the client sees a provider
   * that stopped responding, and the client's own request timeout ends the request.
   */
  holdNext(): void {
    this.queued.push({ hold: true });
  }

  releaseHeld(status: number): void {
    for (const { response, mail } of this.held.splice(0)) {
      mail.status = status;
      if (!response.destroyed) {
        response.writeHead(status, { 'content-type': 'application/json' }).end(status === 202 ? '' : '{"errors":[]}');
      }
    }
  }

  get heldCount(): number {
    return this.held.length;
  }

  /** Resolves once `predicate` holds, checking after every request; rejects after `timeoutMs`. */
  async waitFor(predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(`fake SendGrid: condition not met within ${timeoutMs} ms (${this.received.length} requests so far)`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(remaining, 250));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async start(): Promise<void> {
    this.server = createServer((request, response) => void this.handle(request, response));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    this.releaseHeld(503);
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
    // Keep-alive connections from the SendGrid client would otherwise hold close() open for seconds.
    this.server?.closeAllConnections();
    await closed;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) {
      chunks.push(chunk as Buffer);
    }
    if (request.method !== 'POST' || request.url !== '/v3/mail/send') {
      response.writeHead(404).end();
      return;
    }
    const mail: ReceivedMail = {
      authorization: request.headers.authorization,
      body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
      status: 0,
    };
    this.received.push(mail);

    const behaviour = this.queued.shift();
    if (behaviour && 'hold' in behaviour) {
      this.held.push({ response, mail });
    } else {
      mail.status = behaviour?.status ?? 202;
      this.sequence += 1;
      const options = behaviour && 'options' in behaviour ? behaviour.options : undefined;
      const headers: Record<string, string> = { 'content-type': 'application/json', 'x-message-id': `fake-${this.sequence}` };
      if (options?.retryAfterSeconds !== undefined) {
        headers['retry-after'] = String(options.retryAfterSeconds);
      }
      const errors = options?.errors ?? [{ message: 'rejected by the fake' }];
      response.writeHead(mail.status, headers).end(mail.status === 202 ? '' : JSON.stringify({ errors }));
    }
    for (const wake of this.waiters.splice(0)) {
      wake();
    }
  }
}

/** Returns the invitation link in an email's plain-text part. */
export function linkIn(mail: ReceivedMail): string {
  const text = mail.body.content.find((part) => part.type === 'text/plain')?.value ?? '';
  const match = /https?:\/\/\S+\/invitations\/accept\?token=[A-Za-z0-9_%-]+/.exec(text);
  if (!match) {
    throw new Error(`no invitation link in email "${mail.body.subject}"`);
  }
  return match[0];
}

export function tokenIn(mail: ReceivedMail): string {
  return decodeURIComponent(new URL(linkIn(mail)).searchParams.get('token')!);
}
