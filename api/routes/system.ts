import type { Client } from '@temporalio/client';
import { Router } from 'express';
import type { Knex } from 'knex';

import { buildOpenApiDocument } from '../openapi.js';

const READINESS_TIMEOUT_MS = 3_000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      setTimeout(() => reject(new Error(`${what} did not respond within ${READINESS_TIMEOUT_MS} ms`)), READINESS_TIMEOUT_MS).unref();
    }),
  ]);
}

export function systemRouter(db: Knex, temporal: Client, appBaseUrl: string): Router {
  const router = Router();
  const openApiDocument = buildOpenApiDocument(appBaseUrl);

  router.get('/healthz', (_request, response) => {
    response.json({ status: 'ok' });
  });

  router.get('/readyz', async (request, response) => {
    const checks = await Promise.allSettled([
      withTimeout(db.raw('select 1'), 'database'),
      withTimeout(temporal.workflowService.getSystemInfo({}), 'Temporal'),
    ]);
    const [database, workflowService] = checks.map((check) => {
      if (check.status === 'fulfilled') {
        return 'ok';
      }
      request.log?.warn({ err: check.reason }, 'readiness check failed');
      return 'unavailable';
    });
    const ready = database === 'ok' && workflowService === 'ok';
    response.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'unavailable', checks: { database, temporal: workflowService } });
  });

  router.get('/v1/openapi.json', (_request, response) => {
    response.json(openApiDocument);
  });

  router.get('/v1/roles', async (_request, response) => {
    const roles = await db('roles').orderBy([{ column: 'resource', order: 'asc', nulls: 'first' }, { column: 'key' }]);
    response.json({ data: roles });
  });

  return router;
}
