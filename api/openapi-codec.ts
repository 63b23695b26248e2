import { z } from 'zod';
import type { ZodOpenApiOperationObject, ZodOpenApiPathsObject } from 'zod-openapi';

import { codecRequestSchema } from './routes/codec.js';
import { errorSchema } from './schemas.js';

const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const failure = (description: string) => ({ description, ...json(errorSchema) });
const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });

const payloads = codecRequestSchema.meta({ id: 'CodecPayloads' });

function codecOperation(summary: string, description: string): ZodOpenApiOperationObject {
  return {
    summary,
    description: `${description} Takes an operator key as a bearer token, or the cookie from \`POST /codec/session\`.`,
    security: [{ apiKey: [] }],
    requestBody: { required: true, ...json(payloads) },
    responses: {
      '200': { description: 'The payloads, in the order given.', ...json(payloads) },
      '400': failure('The body is not a list of payloads with base64 metadata and data.'),
      '401': failure('No operator key, or an unknown, revoked or expired one.'),
      '403': failure('A credential other than an operator key.'),
      '422': failure('A payload could not be decrypted, for example because its key is no longer configured.'),
    },
  };
}

const preflight: ZodOpenApiOperationObject = {
  summary: 'CORS preflight from a Temporal Web UI',
  description: 'Allows the origins in `TEMPORAL_UI_ORIGINS` to post with credentials.',
  responses: { '204': { description: 'The CORS headers.' } },
};

/** OpenAPI paths of the codec server, in zod-openapi's format. */
export const codecOpenApiPaths: ZodOpenApiPathsObject = {
  '/codec/decode': {
    post: codecOperation('Decrypt payloads', 'The Temporal remote codec protocol: returns the payloads that the service encrypted, decrypted.'),
    options: preflight,
  },
  '/codec/encode': {
    post: codecOperation('Encrypt payloads', 'The Temporal remote codec protocol: returns the payloads encrypted with the current key.'),
    options: preflight,
  },
  '/codec/session': {
    get: { summary: 'Codec sign-in page for the Temporal Web UI', responses: { '200': html('A form that asks for an operator key.') } },
    post: {
      summary: 'Sign a browser in to the codec server',
      description: 'Takes a form field `operatorKey` and sets an HttpOnly, SameSite=Strict cookie for the `/codec` path, valid for 8 hours.',
      requestBody: {
        required: true,
        content: { 'application/x-www-form-urlencoded': { schema: z.object({ operatorKey: z.string() }) } },
      },
      responses: {
        '200': html('Signed in; the cookie is set.'),
        '400': html('The form again: no operator key was entered.'),
        '401': html('The form again: the operator key is unknown or revoked.'),
      },
    },
  },
};
