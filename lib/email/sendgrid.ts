import { Client } from '@sendgrid/client';
import { MailService } from '@sendgrid/mail';

import { EmailRateLimitedError, PermanentEmailError, type EmailMessage, type EmailSender } from './sender.js';

const REQUEST_TIMEOUT_MS = 10_000;

/** Maximum Retry-After honoured; a larger value is clamped, so that one response cannot delay a send for hours. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** The failure @sendgrid/client throws for a non-2xx response: the status and the parsed body. */
interface SendgridResponseError {
  code?: unknown;
  response?: { headers?: Record<string, unknown>; body?: unknown };
}

/** Joins the messages of a SendGrid error body `{ errors: [{ message, field }] }`, or undefined. */
function providerReason(body: unknown): string | undefined {
  const errors = (body as { errors?: unknown } | undefined)?.errors;
  if (!Array.isArray(errors)) {
    return undefined;
  }
  const parts = errors
    .map((item: { message?: unknown; field?: unknown }) => {
      if (typeof item?.message !== 'string' || item.message === '') {
        return undefined;
      }
      return typeof item.field === 'string' && item.field !== '' ? `${item.message} (${item.field})` : item.message;
    })
    .filter((part): part is string => part !== undefined);
  // Bounded, because the reason is stored and shown to administrators.
  return parts.length > 0 ? parts.join('; ').slice(0, 500) : undefined;
}

/** Reads Retry-After as seconds or an HTTP date (RFC 9110, section 10.2.3); null when absent or invalid. */
function parseRetryAfter(value: unknown): number | null {
  if (typeof value !== 'string' || value.trim() === '') {
    return null;
  }
  const milliseconds = /^\d+$/.test(value.trim()) ? Number(value.trim()) * 1000 : Date.parse(value) - Date.now();
  if (!Number.isFinite(milliseconds)) {
    return null;
  }
  return Math.min(Math.max(milliseconds, 0), MAX_RETRY_AFTER_MS);
}

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
      const { code: statusCode, response } = error as SendgridResponseError;
      // SendGrid returns 400, 403 and 413 for requests that will fail the same way again; 401 is left
      // retryable because a rotated API key is fixed by configuration, not by the message.
      if (typeof statusCode === 'number' && [400, 403, 413].includes(statusCode)) {
        const reason = providerReason(response?.body) ?? `HTTP ${statusCode}`;
        throw new PermanentEmailError(`SendGrid rejected the message with HTTP ${statusCode}: ${reason}`, statusCode, reason);
      }
      if (statusCode === 429) {
        const retryAfterMs = parseRetryAfter(response?.headers?.['retry-after']);
        throw new EmailRateLimitedError('SendGrid rate-limited the request (HTTP 429)', retryAfterMs);
      }
      throw new Error(`SendGrid request failed: ${(error as Error).message}`);
    }
  }
}
