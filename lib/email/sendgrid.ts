import { Client } from '@sendgrid/client';
import { MailService } from '@sendgrid/mail';

import { PermanentEmailError, type EmailMessage, type EmailSender } from './sender.js';

const REQUEST_TIMEOUT_MS = 10_000;

interface SendgridOptions {
  apiKey: string;
  from: string;
  /** Replaces https://api.sendgrid.com, for a regional endpoint or a local fake. */
  apiUrl?: string | undefined;
}

/** Sends email through the SendGrid v3 Mail Send API with the official client. */
export class SendgridEmailSender implements EmailSender {
  private readonly mail = new MailService();

  constructor(private readonly options: SendgridOptions) {
    const client = new Client();
    client.setApiKey(options.apiKey);
    // setApiKey resets the base URL to SendGrid's, so the override has to come after it.
    if (options.apiUrl) {
      client.setDefaultRequest('baseUrl', options.apiUrl);
    }
    this.mail.setClient(client);
    this.mail.setTimeout(REQUEST_TIMEOUT_MS);
  }

  async send(message: EmailMessage): Promise<{ messageId: string | null }> {
    try {
      const [response] = await this.mail.send({
        to: message.to,
        from: this.options.from,
        subject: message.subject,
        text: message.text,
        html: message.html,
        ...(message.categories ? { categories: message.categories } : {}),
        // Link tracking would rewrite the invitation link through SendGrid's servers.
        trackingSettings: { clickTracking: { enable: false, enableText: false } },
      });
      const messageId = response.headers['x-message-id'];
      return { messageId: typeof messageId === 'string' ? messageId : null };
    } catch (error) {
      const statusCode = (error as { code?: unknown }).code;
      // SendGrid returns 400, 403 and 413 for requests that will fail the same way again; 401 is left
      // retryable because a rotated API key is fixed by configuration, not by the message.
      if (typeof statusCode === 'number' && [400, 403, 413].includes(statusCode)) {
        throw new PermanentEmailError(`SendGrid rejected the message with HTTP ${statusCode}`, statusCode);
      }
      throw new Error(`SendGrid request failed: ${(error as Error).message}`);
    }
  }
}
