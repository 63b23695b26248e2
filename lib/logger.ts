import { pino, type Logger } from 'pino';

/** Paths that pino replaces with "[Redacted]" wherever they appear in a log line. */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.token',
  '*.apiKey',
  '*.secret',
  '*.clientSecret',
];

export function createLogger(options: { level: string; name?: string }): Logger {
  return pino({
    name: options.name ?? 'lifecycle',
    level: options.level,
    redact: { paths: REDACTED_PATHS, censor: '[Redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

export type { Logger };
