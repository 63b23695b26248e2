import { Router, type Request } from 'express';
import type { Knex } from 'knex';
import type { Logger } from 'pino';
import { z } from 'zod';

import { INVALID_LINK_MESSAGE, acceptInvitation, previewInvitation } from '../acceptance.js';
import { HttpError, parseOrThrow } from '../errors.js';
import type { InvitationWorkflows } from '../invitation-workflows.js';
import { acceptPage, acceptedPage, invalidLinkPage } from '../pages.js';
import { acceptRequestSchema } from '../schemas.js';

const pageQuerySchema = z.object({ token: z.string().max(200).optional() });

/** Pages hold single-use links: keep them out of caches, and out of Referer headers (helmet sets no-referrer). */
function noStore(response: { setHeader(name: string, value: string): unknown }): void {
  response.setHeader('Cache-Control', 'no-store');
}

function isFormPost(request: Request): boolean {
  return request.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded';
}

/** Serves the pages a person opens from an invitation email. */
export function invitationPagesRouter(db: Knex): Router {
  const router = Router();

  // GET only reads: mail scanners and a second click must not use the link up.
  router.get('/accept', async (request, response) => {
    noStore(response);
    // A missing, repeated or malformed token is just another link that does not work.
    const parsed = pageQuerySchema.safeParse(request.query);
    const token = parsed.success ? parsed.data.token : undefined;
    const preview = token ? await previewInvitation(db, token) : undefined;
    if (!token || !preview) {
      response.status(410).type('html').send(invalidLinkPage(INVALID_LINK_MESSAGE));
      return;
    }
    response.type('html').send(acceptPage(token, preview));
  });

  return router;
}

/** `POST /v1/invitations/accept`, for JSON callers and for the page's form. */
export function invitationApiRouter(db: Knex, invitations: InvitationWorkflows, logger: Logger): Router {
  const router = Router();

  router.post('/accept', async (request, response) => {
    const fromForm = isFormPost(request);
    noStore(response);
    try {
      const body = parseOrThrow(acceptRequestSchema, request.body, 'body');
      const password = fromForm && body.password === '' ? undefined : body.password;
      const accepted = await acceptInvitation(db, body.token, password);

      // The acceptance is committed; if the signal is lost, the workflow finds the invitation
      // accepted when its next timer fires and ends the same way.
      invitations.notifyAccepted(accepted.workflowId, accepted.workflowRunId).catch((error: unknown) => {
        (request.log ?? logger).warn({ err: error, workflowId: accepted.workflowId }, 'could not signal the invitation workflow');
      });

      const place = `${accepted.accountId} (${accepted.environment})`;
      if (fromForm) {
        response.type('html').send(acceptedPage(place));
        return;
      }
      response.json({
        status: 'active',
        userId: accepted.userId,
        email: accepted.email,
        accountId: accepted.accountId,
        environment: accepted.environment,
      });
    } catch (error) {
      if (!fromForm || !(error instanceof HttpError)) {
        throw error;
      }
      // The form gets a page back: the same form with the problem, or the dead-link page.
      const token = typeof request.body?.token === 'string' ? request.body.token : '';
      const preview = error.status === 410 ? undefined : await previewInvitation(db, token);
      response.status(error.status).type('html');
      response.send(preview ? acceptPage(token, preview, error.message) : invalidLinkPage(INVALID_LINK_MESSAGE));
    }
  });

  return router;
}
