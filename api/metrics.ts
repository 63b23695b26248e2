import type { Express, RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

import { RouteTemplates } from './route-inventory.js';

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Label of requests that no route serves, so that unknown paths do not each make a series. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * Prometheus metrics of one API instance: requests by method, route template and status, their
 * latency, and the Node.js process metrics. Each app has its own registry, so that tests can build
 * several apps in one process.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly duration: Histogram<'method' | 'route' | 'status'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'lifecycle_http_requests_total',
      help: 'HTTP requests answered, by method, route template and status code.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'lifecycle_http_request_duration_seconds',
      help: 'Time from receiving an HTTP request to finishing its response, by method, route template and status code.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
  }

  /**
   * Returns middleware that records each request when its response finishes. The route label is the
   * template, such as `/v1/accounts/{accountId}/environments/{environment}/users/{userId}`, never the
   * raw path, so no ids or email addresses reach the labels.
   */
  middleware(app: Express): RequestHandler {
    const templates = new RouteTemplates(app);
    return (request, response, next) => {
      const stopTimer = this.duration.startTimer();
      const method = KNOWN_METHODS.has(request.method) ? request.method : 'OTHER';
      const path = request.originalUrl.split('?')[0]!;
      response.once('finish', () => {
        const labels = { method, route: templates.find(request.method, path) ?? UNMATCHED_ROUTE, status: String(response.statusCode) };
        this.requests.inc(labels);
        stopTimer(labels);
      });
      next();
    };
  }
}
