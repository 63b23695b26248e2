import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';

const dependencyStatus = z.enum(['ok', 'unavailable']);
const readinessSchema = z
  .object({
    status: z.enum(['ok', 'unavailable', 'draining']),
    checks: z.object({ database: dependencyStatus, temporal: dependencyStatus }),
  })
  .meta({ id: 'Readiness' });

const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });

/** OpenAPI paths of the operational routes and the documentation itself, in zod-openapi's format. */
export const systemOpenApiPaths: ZodOpenApiPathsObject = {
  '/healthz': { get: { summary: 'Process is up', responses: { '200': { description: 'Up.' } } } },
  '/readyz': {
    get: {
      summary: 'Database and Temporal are reachable',
      description: 'Checks each dependency with a 3 s timeout. Returns `503` with `status: draining` once the process has received SIGTERM.',
      responses: {
        '200': { description: 'Ready.', content: { 'application/json': { schema: readinessSchema } } },
        '503': { description: 'A dependency is unavailable, or the process is shutting down.', content: { 'application/json': { schema: readinessSchema } } },
      },
    },
  },
  '/metrics': {
    get: {
      summary: 'Prometheus metrics',
      description:
        'Requests by method, route template and status (`lifecycle_http_requests_total`, `lifecycle_http_request_duration_seconds`), and the Node.js process metrics, in the Prometheus text format.',
      responses: { '200': { description: 'The metrics.', content: { 'text/plain': { schema: z.string() } } } },
    },
  },
  '/v1/openapi.json': {
    get: { summary: 'This OpenAPI document', responses: { '200': { description: 'The OpenAPI 3.1 document.' } } },
  },
  '/openapi.json': {
    get: { summary: 'This OpenAPI document, at the root', responses: { '200': { description: 'The OpenAPI 3.1 document.' } } },
  },
  '/docs': {
    get: { summary: 'Interactive documentation (Swagger UI) of this document', responses: { '200': html('The documentation page.') } },
  },
  '/docs/swagger-initializer.js': {
    get: {
      summary: 'The script that starts Swagger UI on /docs',
      responses: { '200': { description: 'JavaScript.', content: { 'text/javascript': { schema: z.string() } } } },
    },
  },
  '/invitations/accept': {
    get: {
      summary: 'The set-password page behind an invitation link',
      description: 'Shows a form that posts to `/v1/invitations/accept`. Opening it changes nothing.',
      requestParams: { query: z.object({ token: z.string().meta({ description: 'The token from the emailed link.' }) }) },
      responses: { '200': html('The page, or a page that says the link no longer works.'), '429': html('Too many attempts from this address.') },
    },
  },
};
