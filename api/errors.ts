import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { ZodError, type z } from 'zod';

import { isDatabaseUnavailable } from '../db/connection.js';

export interface FieldProblem {
  field: string;
  rule: string;
}

/** An error with the HTTP status and stable code that the API responds with. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const notFound = (what: string) => new HttpError(404, 'not_found', `${what} was not found.`);
export const conflict = (code: string, message: string) => new HttpError(409, code, message);

export function validationError(problems: FieldProblem[]): HttpError {
  const summary = problems.map((problem) => `${problem.field} ${problem.rule}`).join('; ');
  return new HttpError(400, 'validation_failed', `The request is invalid: ${summary}.`, problems);
}

/** Joins a prefix (body, query) and a path into a field name such as `body.roles.1`. */
export function fieldName(prefix: string | undefined, path: readonly PropertyKey[]): string {
  return [prefix, ...path.map(String)].filter(Boolean).join('.') || '(root)';
}

function describeType(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  return Array.isArray(value) ? 'array' : typeof value;
}

/** zod's own messages start like this; a schema's own message (such as "must be a whole number") is kept. */
const ZOD_DEFAULT_MESSAGE = /^(Invalid|Too (big|small))/;

function limitRule(issue: { origin?: string; maximum?: unknown; minimum?: unknown }, bound: 'most' | 'least'): string {
  const limit = String(bound === 'most' ? issue.maximum : issue.minimum);
  switch (issue.origin) {
    case 'string':
      return `must be at ${bound} ${limit} characters`;
    case 'array':
    case 'set':
      return `must contain at ${bound} ${limit} items`;
    default:
      return `must be at ${bound} ${limit}`;
  }
}

/** States the rule an issue breaks in the API's words: "is required", "must be at most 200". */
function ruleOf(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return 'is required';
  }
  if (!ZOD_DEFAULT_MESSAGE.test(issue.message)) {
    return issue.message;
  }
  switch (issue.code) {
    case 'invalid_type': {
      const article = /^[aeiou]/.test(issue.expected) ? 'an' : 'a';
      return `must be ${article} ${issue.expected}, not ${describeType(issue.input)}`;
    }
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}`
        : `must be one of: ${issue.values.map((value) => String(value)).join(', ')}`;
    case 'too_big':
      return limitRule(issue, 'most');
    case 'too_small':
      return limitRule(issue, 'least');
    case 'invalid_format':
      return `must be a valid ${issue.format}`;
    default:
      return issue.message;
  }
}

/**
 * Turns zod issues into `{ field, rule }` pairs; `prefix` names where the value came from (body, query).
 * The issues must come from a parse with `reportInput: true`, so that a missing value can be
 * distinguished from a value of the wrong type.
 */
export function fieldProblems(error: z.ZodError, prefix?: string): FieldProblem[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: fieldName(prefix, [...issue.path, key]), rule: 'is not a known field' }));
    }
    return [{ field: fieldName(prefix, issue.path), rule: ruleOf(issue) }];
  });
}

/** Returns the path of the first string that contains a NUL character, which Postgres cannot store. */
function findNulCharacter(value: unknown, path: PropertyKey[] = []): PropertyKey[] | undefined {
  if (typeof value === 'string') {
    return value.includes('\u0000') ? path : undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const found = findNulCharacter(item, [...path, Array.isArray(value) ? Number(key) : key]);
      if (found) {
        return found;
      }
    }
  }
  return undefined;
}

/** Parses a value with a schema or throws a 400 that names each field and the rule it breaks. */
export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, prefix: string): z.output<T> {
  const nulPath = findNulCharacter(value);
  if (nulPath) {
    throw validationError([{ field: fieldName(prefix, nulPath), rule: 'must not contain NUL characters' }]);
  }
  const result = schema.safeParse(value, { reportInput: true });
  if (!result.success) {
    throw validationError(fieldProblems(result.error, prefix));
  }
  return result.data;
}

export const routeNotFound: RequestHandler = (request, _response, next) => {
  next(new HttpError(404, 'not_found', `No route matches ${request.method} ${request.path}.`));
};

interface BodyParserError {
  type?: string;
  status?: number;
}

/** Seconds a client is asked to wait before retrying while the database is unreachable. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/**
 * Builds the 503 for a request that failed because Postgres was unreachable. A write whose connection
 * dropped is rolled back by Postgres, unless the commit itself got through before the drop.
 */
export function databaseUnavailable(): HttpError {
  return new HttpError(
    503,
    'database_unavailable',
    `The database is unreachable at the moment; retry the request in ${DATABASE_RETRY_AFTER_SECONDS} s.`,
    { retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS },
    { 'Retry-After': String(DATABASE_RETRY_AFTER_SECONDS) },
  );
}

/** The one error handler: every failure leaves as `{ error: { code, message, details } }`. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, request, response, _next) => {
    let httpError: HttpError;
    const parserError = error as BodyParserError;
    if (error instanceof HttpError) {
      httpError = error;
    } else if (parserError.type === 'entity.parse.failed') {
      httpError = new HttpError(400, 'malformed_json', 'The request body is not valid JSON.');
    } else if (parserError.type === 'entity.too.large') {
      httpError = new HttpError(413, 'payload_too_large', 'The request body is too large.');
    } else if (error instanceof ZodError) {
      // A schema parsed outside parseOrThrow; still the caller's input, so still a 400.
      httpError = validationError(fieldProblems(error));
    } else if (parserError.type === 'encoding.unsupported' || parserError.type === 'charset.unsupported') {
      httpError = new HttpError(415, 'unsupported_media_type', 'The request body encoding is not supported; send UTF-8.');
    } else if (isDatabaseUnavailable(error)) {
      (request.log ?? logger).warn({ err: error }, 'request failed: database unreachable');
      httpError = databaseUnavailable();
    } else {
      // Database and Temporal errors can quote values; log them, never echo them.
      (request.log ?? logger).error({ err: error }, 'request failed');
      httpError = new HttpError(500, 'internal_error', 'The request failed on the server. It has been logged; try again later.');
    }

    if (response.headersSent) {
      return;
    }
    for (const [name, value] of Object.entries(httpError.headers ?? {})) {
      response.setHeader(name, value);
    }
    response.status(httpError.status).json({
      error: {
        code: httpError.code,
        message: httpError.message,
        details: httpError.details ?? null,
      },
    });
  };
}
