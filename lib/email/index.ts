import type { Logger } from 'pino';

import type { Config } from '../config.js';
import { LogEmailSender } from './log.js';
import { SendgridEmailSender } from './sendgrid.js';
import type { EmailSender } from './sender.js';

export { EmailRateLimitedError, PermanentEmailError, type EmailMessage, type EmailSender } from './sender.js';

export function createEmailSender(config: Config, logger: Logger): EmailSender {
  if (config.email.provider === 'sendgrid') {
    return new SendgridEmailSender({
      apiKey: config.email.sendgridApiKey!,
      from: config.email.from,
      apiUrl: config.email.sendgridApiUrl,
    });
  }
  return new LogEmailSender(logger);
}
