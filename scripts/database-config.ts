import { ConfigError } from '../lib/config.js';

/**
 * Reads only the database settings, for commands that touch nothing else. loadConfig() also requires
 * APP_SECRET and APP_BASE_URL and rejects EMAIL_PROVIDER=log under NODE_ENV=production, none of which a
 * migration needs. The checks repeat those of lib/config.ts for these two variables, except that the
 * pool defaults to 2 connections, because these commands run one query at a time.
 */
export function loadDatabaseConfig(env: NodeJS.ProcessEnv = process.env): { url: string; poolMax: number } {
  const problems: string[] = [];

  const url = env.DATABASE_URL;
  if (!url) {
    problems.push('DATABASE_URL is required but not set');
  } else if (!/^postgres(ql)?:\/\//.test(url)) {
    problems.push('DATABASE_URL must be a postgres:// connection URL');
  }

  const poolMax = env.DATABASE_POOL_MAX === undefined ? 2 : Number(env.DATABASE_POOL_MAX);
  if (!Number.isInteger(poolMax) || poolMax < 1 || poolMax > 100) {
    problems.push(`DATABASE_POOL_MAX must be an integer from 1 to 100, got "${env.DATABASE_POOL_MAX}"`);
  }

  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return { url: url!, poolMax };
}

/** Returns the URL with its password masked, for messages and logs. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) {
      parsed.password = '***';
    }
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
