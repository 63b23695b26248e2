import { z } from 'zod';
import type { ZodOpenApiPathsObject, ZodOpenApiResponsesObject, ZodOpenApiSecuritySchemeObject } from 'zod-openapi';

import {
  emailChangeConfirmationSchema,
  emailChangeRequestSchema,
  emailChangeStartedSchema,
  emailChangedSchema,
  passwordChangeRequestSchema,
  passwordChangedSchema,
  passwordResetAcceptedSchema,
  passwordResetConfirmationSchema,
  passwordResetDoneSchema,
  passwordResetRequestSchema,
} from './routes/account-settings.js';
import { errorSchema } from './schemas.js';

const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
const html = { content: { 'text/html': { schema: z.string() } } };
const failure = (description: string) => ({ description, ...json(errorSchema) });

/** The scheme the signed-in routes name; merge it into `components.securitySchemes`. */
export const accountSettingsSecuritySchemes: Record<string, ZodOpenApiSecuritySchemeObject> = {
  sessionToken: { type: 'http', scheme: 'bearer', description: 'A session token from POST /v1/auth/login: `Authorization: Bearer ls_...`.' },
};

const sessionFailures: ZodOpenApiResponsesObject = {
  '401': failure('Missing, unknown, expired or revoked session token.'),
  '403': failure('The credential is not a session token, or `currentPassword` is not the current password (`current_password_incorrect`).'),
  '429': failure('Too many password attempts for this person or client address; see the Retry-After header.'),
};

const tokenQuery = z.object({ token: z.string().meta({ description: 'The `token` parameter of the emailed link.' }) });

/** Paths of password change, email change and password reset, in the format of api/openapi.ts. */
export const accountSettingsPaths: ZodOpenApiPathsObject = {
  '/v1/me/password': {
    post: {
      summary: 'Change the password',
      description: 'Needs the current password. Every other session of the person ends; the calling session continues.',
      security: [{ sessionToken: [] }],
      requestBody: json(passwordChangeRequestSchema),
      responses: {
        '200': { description: 'The password is changed.', ...json(passwordChangedSchema) },
        '400': failure('Invalid body, or a new password that breaks a rule; `details` names the field and rule.'),
        ...sessionFailures,
        '409': failure('Another request changed the password meanwhile.'),
      },
    },
  },
  '/v1/me/email': {
    post: {
      summary: 'Request an email address change',
      description:
        'Needs the current password. Mails a confirmation link to the new address and a notice to the old one; the address changes only when the link is used. A second request replaces a pending one, whose link stops working. Whether another person uses the address is checked at confirmation, so this route reveals nothing about other accounts.',
      security: [{ sessionToken: [] }],
      requestBody: json(emailChangeRequestSchema),
      responses: {
        '202': { description: 'The request was handed to the email-change workflow, which mails both emails right after.', ...json(emailChangeStartedSchema) },
        '400': failure('Invalid body, or the new address is the current one.'),
        ...sessionFailures,
      },
    },
  },
  '/email-changes/confirm': {
    get: {
      summary: 'Email change confirmation page',
      description: 'The page behind the emailed link. Opening it changes nothing; its button posts to POST /v1/email-changes/confirm.',
      requestParams: { query: tokenQuery },
      responses: {
        '200': { description: 'The confirmation page.', ...html },
        '410': { description: 'The link was used, replaced, cancelled or has expired.', ...html },
        '429': failure('Too many attempts with emailed links from this client address.'),
      },
    },
  },
  '/v1/email-changes/confirm': {
    post: {
      summary: 'Confirm an email address change',
      description: 'Needs only the token of the emailed link. Also accepts the form of GET /email-changes/confirm and then responds with HTML.',
      requestBody: json(emailChangeConfirmationSchema),
      responses: {
        '200': { description: 'The person now signs in with the new address.', ...json(emailChangedSchema) },
        '409': failure('Another account uses the address by now (`email_taken`); the change ends and its link stops working.'),
        '410': failure('The link was used, replaced, cancelled or has expired.'),
        '429': failure('Too many attempts with emailed links from this client address.'),
      },
    },
  },
  '/v1/auth/password-reset': {
    post: {
      summary: 'Request a password reset link',
      description:
        'Always answers 202 with the same body, whether or not an account uses the address. If one does and has a password, a single-use link is mailed; a newer request replaces the link.',
      requestBody: json(passwordResetRequestSchema),
      responses: {
        '202': { description: 'Accepted.', ...json(passwordResetAcceptedSchema) },
        '400': failure('Invalid body.'),
        '429': failure('Too many requests for this address or from this client address; see the Retry-After header.'),
      },
    },
  },
  '/password-reset': {
    get: {
      summary: 'Password reset page',
      description: 'The new-password form behind the emailed link. Opening it changes nothing.',
      requestParams: { query: tokenQuery },
      responses: {
        '200': { description: 'The form.', ...html },
        '410': { description: 'The link was used, replaced or has expired.', ...html },
        '429': failure('Too many attempts with emailed links from this client address.'),
      },
    },
  },
  '/v1/auth/password-reset/confirm': {
    post: {
      summary: 'Set a new password with a reset link',
      description: 'Every session of the person ends. Also accepts the form of GET /password-reset and then responds with HTML.',
      requestBody: json(passwordResetConfirmationSchema),
      responses: {
        '200': { description: 'The new password is set.', ...json(passwordResetDoneSchema) },
        '400': failure('The password breaks a rule; the link keeps working.'),
        '410': failure('The link was used, replaced or has expired.'),
        '429': failure('Too many attempts with emailed links from this client address.'),
      },
    },
  },
};
