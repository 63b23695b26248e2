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
  constructor(message: string, readonly statusCode: number) {
    super(message);
    this.name = 'PermanentEmailError';
  }
}
