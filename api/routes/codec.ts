import { createHmac } from 'node:crypto';

import type { Payload } from '@temporalio/common';
import cors from 'cors';
import express, { Router, type Request, type RequestHandler } from 'express';
import type { Knex } from 'knex';
import { z } from 'zod';

import type { Config } from '../../lib/config.js';
import { AesGcmPayloadCodec } from '../../lib/payload-codec.js';
import { constantTimeEqual, deriveKey, hashToken, isOperatorKey } from '../../lib/secrets.js';
import { HttpError, parseOrThrow } from '../errors.js';
import { escapeHtml, layout } from '../pages.js';
import { cookieOptions, readCookie } from '../sso/cookies.js';

/**
 * A codec server for the Temporal Web UI and CLI (`temporal workflow show --codec-endpoint`): it turns
 * the encrypted payloads of workflow history back into JSON for platform operators. Only operator
 * keys may use it, because decoded payloads hold email addresses and other personal data.
 *
 * The Web UI sends no custom headers, so a browser signs in once at /codec/session with an operator key
 * and gets a cookie for the /codec path. The CLI sends the key as `Authorization: Bearer lo_…`.
 */

const CODEC_COOKIE = 'lc_codec';
const COOKIE_LIFETIME_MS = 8 * 60 * 60 * 1000;
const BEARER = /^Bearer\s+(\S+)$/i;

const payloadSchema = z.object({
  metadata: z.record(z.string(), z.base64()).optional(),
  data: z.base64().optional(),
});
// Protobuf JSON omits an empty list, so a request for no payloads may come as {}.
export const codecRequestSchema = z.object({ payloads: z.array(payloadSchema).max(10_000).default([]) });

type JsonPayload = z.infer<typeof payloadSchema>;

function fromJson(payload: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([name, value]) => [name, Buffer.from(value, 'base64')])),
    data: Buffer.from(payload.data ?? '', 'base64'),
  };
}

function toJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([name, value]) => [name, Buffer.from(value).toString('base64')])),
    data: Buffer.from(payload.data ?? []).toString('base64'),
  };
}

/** Signs `<operatorKeyId>.<expiresAtMs>` for the codec cookie. */
function signCookie(key: Buffer, operatorKeyId: string, expiresAtMs: number): string {
  const body = `${operatorKeyId}.${expiresAtMs}`;
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`;
}

/** Returns the operator key id of a valid, unexpired codec cookie, or undefined. */
function verifyCookie(key: Buffer, value: string): string | undefined {
  const [operatorKeyId, expiresAt, signature] = value.split('.');
  if (!operatorKeyId || !expiresAt || !signature || !/^\d+$/.test(expiresAt)) {
    return undefined;
  }
  const expected = signCookie(key, operatorKeyId, Number(expiresAt));
  if (!constantTimeEqual(expected, value) || Number(expiresAt) < Date.now()) {
    return undefined;
  }
  return operatorKeyId;
}

async function findOperatorKey(db: Knex, key: string): Promise<{ id: string } | undefined> {
  if (!isOperatorKey(key)) {
    return undefined;
  }
  return db('operator_api_keys').where({ secret_hash: hashToken(key) }).whereNull('revoked_at').first('id');
}

function signInPage(problem?: string): string {
  return layout(
    'Codec sign-in',
    `<h1>Read encrypted workflow data</h1>
<p>Workflow payloads are encrypted. Sign in with an operator key, and the Temporal Web UI can show them
decrypted through this codec server until the cookie expires after 8 hours.</p>
${problem ? `<p class="error">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/codec/session">
  <label for="operatorKey">Operator key</label>
  <input id="operatorKey" name="operatorKey" type="password" autocomplete="off" required>
  <button type="submit">Sign in</button>
</form>`,
  );
}

/** Builds the routes under /codec: decode, encode, and the browser sign-in. */
export function codecRouter(db: Knex, config: Config): Router {
  const router = Router();
  const codec = new AesGcmPayloadCodec(config.temporal.payloadKeys);
  const cookieKey = deriveKey(config.appSecret, 'codec-cookie');
  // The Web UI calls from its own origin and must send the cookie, so credentials are allowed for those
  // origins only. A JSON body needs a preflight, so another site cannot post one with the cookie.
  const corsForUi = cors({
    origin: config.temporal.uiOrigins,
    credentials: true,
    methods: ['POST'],
    allowedHeaders: ['Content-Type', 'X-Namespace', 'Authorization'],
    maxAge: 600,
  });

  const requireCodecOperator: RequestHandler = async (request: Request, _response, next) => {
    const bearer = BEARER.exec(request.get('authorization') ?? '')?.[1];
    if (bearer !== undefined) {
      if (!bearer.startsWith('lo_')) {
        throw new HttpError(403, 'forbidden', 'The codec server needs an operator key (lo_…).');
      }
      if (!(await findOperatorKey(db, bearer))) {
        throw new HttpError(401, 'unauthorized', 'The operator key is unknown or revoked.');
      }
      next();
      return;
    }

    const cookie = readCookie(request, CODEC_COOKIE);
    const operatorKeyId = cookie === undefined ? undefined : verifyCookie(cookieKey, cookie);
    const active = operatorKeyId && (await db('operator_api_keys').where({ id: operatorKeyId }).whereNull('revoked_at').first('id'));
    if (!active) {
      throw new HttpError(
        401,
        'unauthorized',
        `Send an operator key as "Authorization: Bearer lo_…", or sign in at ${config.appBaseUrl}/codec/session for the Temporal Web UI.`,
      );
    }
    next();
  };

  router.options(['/codec/decode', '/codec/encode'], corsForUi);

  router.post('/codec/decode', corsForUi, requireCodecOperator, async (request, response) => {
    const body = parseOrThrow(codecRequestSchema, request.body, 'body');
    const decoded = await codec.decode(body.payloads.map(fromJson)).catch((error: unknown) => {
      throw new HttpError(422, 'payload_not_decodable', (error as Error).message);
    });
    request.log.info({ payloads: decoded.length, namespace: request.get('x-namespace') }, 'payloads decoded for an operator');
    response.json({ payloads: decoded.map(toJson) });
  });

  router.post('/codec/encode', corsForUi, requireCodecOperator, async (request, response) => {
    const body = parseOrThrow(codecRequestSchema, request.body, 'body');
    const encoded = await codec.encode(body.payloads.map(fromJson));
    response.json({ payloads: encoded.map(toJson) });
  });

  router.get('/codec/session', (_request, response) => {
    response.set('Cache-Control', 'no-store').type('html').send(signInPage());
  });

  router.post('/codec/session', async (request, response) => {
    const key = typeof request.body?.operatorKey === 'string' ? request.body.operatorKey.trim() : '';
    if (key === '') {
      response.status(400).set('Cache-Control', 'no-store').type('html').send(signInPage('Enter an operator key (lo_…).'));
      return;
    }
    const operator = await findOperatorKey(db, key);
    if (!operator) {
      response.status(401).set('Cache-Control', 'no-store').type('html').send(signInPage('The operator key is unknown or revoked.'));
      return;
    }
    const expiresAtMs = Date.now() + COOKIE_LIFETIME_MS;
    response.cookie(CODEC_COOKIE, signCookie(cookieKey, operator.id, expiresAtMs), {
      ...cookieOptions(config, '/codec', COOKIE_LIFETIME_MS),
      sameSite: 'strict',
    });
    request.log.info({ operatorKeyId: operator.id }, 'operator signed in to the codec server');
    response
      .set('Cache-Control', 'no-store')
      .type('html')
      .send(
        layout(
          'Codec sign-in',
          `<h1>Signed in</h1><p class="ok">The Temporal Web UI can decode payloads through <code>${escapeHtml(config.appBaseUrl)}/codec</code> until ${new Date(expiresAtMs).toISOString()}.</p>
<p class="hint">In the Web UI's codec server settings, set the endpoint to that address, turn on "Include cross-origin credentials", and choose "Use my browser setting and ignore Cluster-level setting" where the UI offers it.</p>`,
        ),
      );
  });

  return router;
}

/** The JSON parser for /codec: a page of history can carry more than the 100 kB other requests get. */
export const codecBodyParser = express.json({ limit: '4mb', strict: true });
