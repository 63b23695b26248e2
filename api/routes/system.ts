import type { Client } from '@temporalio/client';
import { Router } from 'express';
import type { Knex } from 'knex';
import type { Registry } from 'prom-client';

import type { DrainState } from '../context.js';

const READINESS_TIMEOUT_MS = 3_000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      setTimeout(() => reject(new Error(`${what} did not respond within ${READINESS_TIMEOUT_MS} ms`)), READINESS_TIMEOUT_MS).unref();
    }),
  ]);
}

/** Serves the liveness and readiness checks, the Prometheus metrics and the role catalog. */
export function systemRouter(db: Knex, temporal: Client, drain: DrainState, metrics: Registry): Router {
  const router = Router();

  router.get('/healthz', (_request, response) => {
    response.json({ status: 'ok' });
  });

  router.get('/readyz', async (request, response) => {
    const checks = await Promise.allSettled([
      withTimeout(db.raw('select 1'), 'database'),
      withTimeout(temporal.workflowService.getSystemInfo({}), 'Temporal'),
    ]);
    const [database, workflowService] = checks.map((check, index) => {
      if (check.status === 'fulfilled') {
        return 'ok';
      }
      request.log?.warn({ err: check.reason, dependency: index === 0 ? 'database' : 'temporal' }, 'readiness check failed');
      return 'unavailable';
    });
    const checksBody = { database, temporal: workflowService };
    if (drain.draining) {
      response.status(503).json({ status: 'draining', checks: checksBody });
      return;
    }
    const ready = database === 'ok' && workflowService === 'ok';
    response.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'unavailable', checks: checksBody });
  });

  router.get('/metrics', async (_request, response) => {
    response.type(metrics.contentType).send(await metrics.metrics());
  });

  router.get('/v1/roles', async (_request, response) => {
    const roles = await db('roles').orderBy([{ column: 'resource', order: 'asc', nulls: 'first' }, { column: 'key' }]);
    response.json({ data: roles });
  });

  return router;
}
