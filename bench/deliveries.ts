import { performance } from 'node:perf_hooks';

import type { FakeSendgrid, ReceivedMail } from '../test/support/fake-sendgrid.js';

function recipientOf(mail: ReceivedMail): string | undefined {
  return mail.body.personalizations[0]?.to[0]?.email;
}

/**
 * Records when each recipient's first email reached the fake SendGrid, as `performance.now()`.
 * The fake wakes its waiters after every request it handles, so `watch` stamps each email in the same
 * turn of the event loop in which the fake read it.
 */
export class DeliveryClock {
  private readonly arrivals = new Map<string, number>();
  private seen = 0;

  constructor(private readonly sendgrid: FakeSendgrid) {}

  arrivalOf(email: string): number | undefined {
    return this.arrivals.get(email);
  }

  /** Stamps the emails that arrived since the last call. */
  private collect(): void {
    const received = this.sendgrid.received;
    const now = performance.now();
    for (; this.seen < received.length; this.seen += 1) {
      const mail = received[this.seen]!;
      const recipient = recipientOf(mail);
      if (mail.status === 202 && recipient !== undefined && !this.arrivals.has(recipient)) {
        this.arrivals.set(recipient, now);
      }
    }
  }

  /**
   * Stamps arrivals until `isDone` returns true, checking after every request to the fake and at
   * least every 250 ms. Rejects after `timeoutMs`.
   */
  async watch(isDone: () => boolean, timeoutMs: number): Promise<void> {
    await this.sendgrid.waitFor(() => {
      this.collect();
      return isDone();
    }, timeoutMs);
  }
}
