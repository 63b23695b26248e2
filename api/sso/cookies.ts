import type { Request, Response } from 'express';

import type { Config } from '../../lib/config.js';

/** Names of the cookies single sign-on sets. */
export const STATE_COOKIE = 'lc_sso_state';
export const SESSION_COOKIE = 'lc_session';

/** Reads one cookie from the Cookie header; the app has no cookie parser. */
export function readCookie(request: Request, name: string): string | undefined {
  for (const part of (request.get('cookie') ?? '').split(';')) {
    const separator = part.indexOf('=');
    if (separator > 0 && part.slice(0, separator).trim() === name) {
      try {
        return decodeURIComponent(part.slice(separator + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Returns cookie options: HttpOnly, SameSite=Lax, and Secure unless the app runs on plain http outside production. */
export function cookieOptions(config: Config, path: string, maxAgeMs: number) {
  const secure = config.nodeEnv === 'production' || config.appBaseUrl.startsWith('https:');
  return { httpOnly: true, sameSite: 'lax' as const, secure, path, maxAge: maxAgeMs };
}

export function clearCookie(response: Response, config: Config, name: string, path: string): void {
  const { maxAge: _maxAge, ...options } = cookieOptions(config, path, 0);
  response.clearCookie(name, options);
}
