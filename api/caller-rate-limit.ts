import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import { rateLimit } from 'express-rate-limit';

import type { Config } from '../lib/config.js';
import type { Caller } from './context.js';
import { HttpError } from './errors.js';

const WINDOW_MS = 60_000;
const LOCALS_KEY = 'callerRateLimit';

/** Returns the rate-limit bucket of a caller: one per API key, per session and per operator key. */
function callerKey(caller: Caller): string {
  switch (caller.kind) {
    case 'apiKey':
      return `api-key:${caller.apiKeyId}`;
    case 'session':
      return `session:${caller.sessionId}`;
    case 'operator':
      return `operator:${caller.operatorKeyId}`;
  }
}

/**
 * Installs the limit of `API_RATE_LIMIT_PER_MINUTE` requests per authenticated caller on `app`.
 * `authenticate()` applies it once it has resolved the caller, so the count is per credential, not per
 * client address. Many clients behind one proxy therefore do not share a budget.
 */
export function installCallerRateLimit(app: Express, config: Config): void {
  // NOTE: the memory store counts per API process; several API replicas need a shared store.
  const limiter = rateLimit({
    windowMs: WINDOW_MS,
    limit: config.apiRateLimitPerMinute,
    identifier: 'api-caller',
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    keyGenerator: (request) => callerKey(request.caller!),
    handler: (request, _response, next) => {
      const resetTime = (request as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
      const retryAfter = Math.max(1, Math.ceil(((resetTime?.getTime() ?? Date.now() + WINDOW_MS) - Date.now()) / 1000));
      next(
        new HttpError(
          429,
          'rate_limited',
          `Too many requests with this credential: the limit is ${config.apiRateLimitPerMinute} a minute; try again in ${retryAfter} s.`,
          { retryAfterSeconds: retryAfter },
          { 'Retry-After': String(retryAfter) },
        ),
      );
    },
  });
  app.locals[LOCALS_KEY] = limiter;
}

const counted = Symbol('callerRateLimitCounted');

/**
 * Counts the request against its caller's limit and calls `next`, or passes a 429 to `next`. A request
 * that passes through `authenticate()` twice is counted once. Without an installed limit, it only calls `next`.
 */
export function applyCallerRateLimit(request: Request, response: Response, next: NextFunction): void {
  const limiter = request.app.locals[LOCALS_KEY] as RequestHandler | undefined;
  const marked = request as Request & { [counted]?: true };
  if (!limiter || marked[counted]) {
    next();
    return;
  }
  marked[counted] = true;
  void limiter(request, response, next);
}
