export interface EmailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** Tags the provider can report on; never a secret. */
  categories?: string[];
}

export interface EmailSender {
  /** Hands the message to the provider and returns the provider's message id, if it gives one. */
  send(message: EmailMessage): Promise<{ messageId: string | null }>;
}

/** A failure the provider reported as permanent (for example a rejected address); retrying cannot help. */
export class PermanentEmailError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
    /** The provider's own explanation, such as "Does not contain a valid address.", at most 500 characters. */
    readonly reason: string,
  ) {
    super(message);
    this.name = 'PermanentEmailError';
  }
}

/** The provider asked the sender to slow down (HTTP 429); the same message may succeed later. */
export class EmailRateLimitedError extends Error {
  constructor(
    message: string,
    /** The provider's Retry-After in milliseconds, or null when it gave none. */
    readonly retryAfterMs: number | null,
  ) {
    super(message);
    this.name = 'EmailRateLimitedError';
  }
}
