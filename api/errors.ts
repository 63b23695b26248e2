import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { z } from 'zod';

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

/** Turns zod issues into `{ field, rule }` pairs; `prefix` names where the value came from (body, query). */
export function fieldProblems(error: z.ZodError, prefix?: string): FieldProblem[] {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    const field = [prefix, path].filter(Boolean).join('.') || prefix || '(root)';
    let rule = issue.message;
    if (issue.code === 'invalid_type' && issue.input === undefined) {
      rule = 'is required';
    } else if (issue.code === 'unrecognized_keys') {
      rule = `has unknown field(s): ${issue.keys.join(', ')}`;
    }
    return { field, rule };
  });
}

/** Parses a value with a schema or throws a 400 that names each field and the rule it breaks. */
export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, prefix: string): z.output<T> {
  const result = schema.safeParse(value);
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
    } else if (parserError.type === 'encoding.unsupported' || parserError.type === 'charset.unsupported') {
      httpError = new HttpError(415, 'unsupported_media_type', 'The request body encoding is not supported; send UTF-8.');
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
