import { randomUUID } from 'node:crypto';

import express, { type Express } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';

import { deriveKey } from '../lib/secrets.js';
import { authenticate, requireEnvironmentMember } from './auth.js';
import { installCallerRateLimit } from './caller-rate-limit.js';
import type { ApiDependencies } from './context.js';
import { errorHandler, HttpError, routeNotFound } from './errors.js';
import { InvitationWorkflows } from './invitation-workflows.js';
import { ApiMetrics } from './metrics.js';
import { accountSettingsRouter } from './routes/account-settings.js';
import { auditRouter } from './routes/audit.js';
import { authRouter, meRouter } from './routes/auth.js';
import { bulkRouter } from './routes/bulk.js';
import { codecBodyParser, codecRouter } from './routes/codec.js';
import { docsRouter } from './routes/docs.js';
import type { RouterDependencies } from './routes/dependencies.js';
import { invitationApiRouter, invitationPagesRouter } from './routes/invitations.js';
import { memberChangesRouter } from './routes/member-changes.js';
import { operatorRouter } from './routes/operator.js';
import { ssoRouter } from './routes/sso.js';
import { systemRouter } from './routes/system.js';
import { usersRouter } from './routes/users.js';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,100}$/;

/** Builds the HTTP API. Tests call this with real dependencies and drive it with supertest. */
export function createApp(dependencies: ApiDependencies): Express {
  const { config, db, temporal, logger } = dependencies;
  const drain = dependencies.drain ?? { draining: false };
  const metrics = new ApiMetrics();
  const invitations = new InvitationWorkflows(temporal, config, deriveKey(config.appSecret, 'workflow-id'));
  const routerDependencies: RouterDependencies = { ...dependencies, invitations };

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  installCallerRateLimit(app, config);
  app.use(metrics.middleware(app));
  app.use((_request, response, next) => {
    // While draining, clients with keep-alive connections reconnect, and so reach another instance.
    if (drain.draining) {
      response.setHeader('Connection', 'close');
    }
    next();
  });

  app.use(
    pinoHttp({
      logger,
      genReqId: (request, response) => {
        const given = request.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
        response.setHeader('X-Request-Id', id);
        return id;
      },
      // Only the path is logged: query strings can carry invitation tokens. Of the response only the
      // status is logged, because its Set-Cookie header carries session tokens.
      serializers: {
        req: (request: { id: string; method: string; url: string }) => ({
          id: request.id,
          method: request.method,
          path: request.url.split('?')[0],
        }),
        res: (response: { statusCode: number }) => ({ statusCode: response.statusCode }),
      },
      customLogLevel: (request, response, error) => {
        // A 503 from /readyz is the expected response while the process drains or a dependency is down.
        // The readiness check logs the cause itself.
        if (request.url === '/readyz') {
          return 'info';
        }
        return error || response.statusCode >= 500 ? 'error' : 'info';
      },
    }),
  );
  // Over plain http (local development) an upgrade-insecure-requests policy or HSTS would send
  // browsers to https://localhost, where nothing listens.
  const secureOrigin = config.appBaseUrl.startsWith('https://');
  app.use(
    helmet({
      referrerPolicy: { policy: 'no-referrer' },
      strictTransportSecurity: secureOrigin,
      contentSecurityPolicy: { directives: { upgradeInsecureRequests: secureOrigin ? [] : null } },
    }),
  );
  // A bulk onboarding of 1,000 rows needs more than the 100 kB that other requests get. The parser that
  // runs first marks the body as parsed, so the general one below skips it.
  app.use('/v1/accounts/:accountId/environments/:environment/users\\:batch', express.json({ limit: '1mb', strict: true }));
  app.use('/codec', codecBodyParser);
  app.use(express.json({ limit: '100kb', strict: true }));
  app.use(express.urlencoded({ extended: false, limit: '10kb' }));
  app.use((request, _response, next) => {
    // A body the parsers above skipped would otherwise look like a missing one.
    const hasBody = Number(request.get('content-length') ?? 0) > 0 || request.get('transfer-encoding') !== undefined;
    if (hasBody && !request.is(['application/json', 'application/x-www-form-urlencoded', 'text/csv'])) {
      next(new HttpError(415, 'unsupported_media_type', 'Send the request body as application/json (text/csv where a route says so).'));
      return;
    }
    next();
  });

  const tokenRouteLimiter = rateLimit({
    windowMs: 60_000,
    limit: config.tokenRateLimitPerMinute,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (_request, _response, next, options) => {
      const retryAfter = String(Math.ceil(options.windowMs / 1000));
      next(new HttpError(429, 'rate_limited', 'Too many attempts with invitation links; wait a minute and try again.', null, { 'Retry-After': retryAfter }));
    },
  });

  app.use(systemRouter(db, temporal, drain, metrics.registry));
  app.use(codecRouter(db, config));
  app.use(docsRouter(config.appBaseUrl));
  app.use('/invitations', tokenRouteLimiter, invitationPagesRouter(db));
  app.use('/v1/invitations', tokenRouteLimiter, invitationApiRouter(db, invitations, logger));
  app.use(accountSettingsRouter(routerDependencies));
  app.use(ssoRouter(routerDependencies));
  app.use('/v1/auth', authRouter(db, config));
  app.use('/v1/me', meRouter(db, config));
  app.use('/v1/operator', operatorRouter(routerDependencies));
  app.use('/v1/accounts/:accountId', bulkRouter(routerDependencies));
  const environmentRoutes = '/v1/accounts/:accountId/environments/:environment';
  app.use(
    `${environmentRoutes}/users`,
    authenticate(db, config),
    requireEnvironmentMember(db),
    usersRouter(db, invitations),
    memberChangesRouter(routerDependencies),
  );
  app.use(`${environmentRoutes}/audit-events`, authenticate(db, config), requireEnvironmentMember(db), auditRouter(db));

  app.use(routeNotFound);
  app.use(errorHandler(logger));
  return app;
}
