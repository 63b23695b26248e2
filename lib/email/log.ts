import type { Logger } from 'pino';

import type { EmailMessage, EmailSender } from './sender.js';

/**
 * Development provider: writes each email to the log instead of sending it, so a person running the
 * service locally can open the link. Configuration rejects it when NODE_ENV=production, because the
 * text contains single-use links.
 */
export class LogEmailSender implements EmailSender {
  private sequence = 0;

  constructor(private readonly logger: Logger) {}

  async send(message: EmailMessage): Promise<{ messageId: string | null }> {
    this.sequence += 1;
    const messageId = `log-${process.pid}-${this.sequence}`;
    const links = message.text.match(/https?:\/\/\S+/g) ?? [];
    this.logger.info({ email: { to: message.to, subject: message.subject, links }, messageId }, 'email (log provider, not sent)');
    return { messageId };
  }
}
