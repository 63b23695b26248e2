import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { chromium, type Browser } from 'playwright-core';

import { createApp } from '../api/app.js';
import { listRegisteredRoutes, toOpenApiPath } from '../api/route-inventory.js';
import { startHarness, type Harness } from './support/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

let harness: Harness;
let server: Server;
let baseUrl: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}; install the Debian package "chromium" (apt-get install chromium) to run the docs test.`);
  }
  harness = await startHarness({ inProcessWorker: false });
  const app = createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
  await harness?.close();
});

/** Lists every `METHOD /path` of the OpenAPI document. */
function documentedOperations(document: { paths: Record<string, Record<string, unknown>> }): string[] {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((key) => HTTP_METHODS.includes(key))
      .map((method) => `${method.toUpperCase()} ${path}`),
  );
}

describe('route inventory', () => {
  test('lists routes the app registers', () => {
    const app = createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) });
    const routes = listRegisteredRoutes(app).map((route) => `${route.method} ${route.path}`);

    // Spot checks across the ways routes are mounted: on the app, under a prefix, and two levels deep.
    expect(routes).toContain('GET /healthz');
    expect(routes).toContain('POST /v1/auth/login');
    expect(routes).toContain('POST /v1/accounts/:accountId/environments/:environment/users/:userId/deactivate');
    expect(routes).toContain('POST /v1/accounts/:accountId/environments/:environment/users\\:batch');
    expect(routes.filter((route) => route.startsWith('HEAD '))).toEqual([]);
    expect(new Set(routes).size).toBe(routes.length);
  });

  test('converts paths to OpenAPI form', () => {
    expect(toOpenApiPath('/v1/accounts/:accountId/environments/:environment/users\\:batch')).toBe(
      '/v1/accounts/{accountId}/environments/{environment}/users:batch',
    );
    expect(toOpenApiPath('/healthz')).toBe('/healthz');
  });
});

describe('OpenAPI coverage', () => {
  test('document and routes match', async () => {
    const response = await harness.api.get('/v1/openapi.json');
    expect(response.status).toBe(200);
    const documented = documentedOperations(response.body);
    const app = createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) });
    const registered = listRegisteredRoutes(app).map((route) => `${route.method} ${toOpenApiPath(route.path)}`);

    expect(registered.filter((route) => !documented.includes(route))).toEqual([]);
    expect(documented.filter((operation) => !registered.includes(operation))).toEqual([]);
  });

  test('served at the root too', async () => {
    const versioned = await harness.api.get('/v1/openapi.json');
    const root = await harness.api.get('/openapi.json');
    expect(root.status).toBe(200);
    expect(root.body).toEqual(versioned.body);
  });
});

/** Returns every registered route with its path parameters filled in, so that it can be requested. */
function requestableRoutes(): { method: string; path: string; url: string }[] {
  const app = createApp({ config: harness.config, db: harness.db, temporal: harness.temporal, logger: pino({ level: 'silent' }) });
  return listRegisteredRoutes(app).map((route) => ({
    ...route,
    url: route.path.replace(/(?<!\\):[A-Za-z_]+/g, 'placeholder').replace(/\\:/g, ':'),
  }));
}

describe('limits on every route', () => {
  test('bodies over the limit get 413', async () => {
    const routes = requestableRoutes().filter((route) => ['POST', 'PUT', 'PATCH'].includes(route.method));
    expect(routes.length).toBeGreaterThan(20);
    for (const route of routes) {
      // The bulk route takes 1 MB of JSON for its 1,000 rows, the codec server 4 MB of history payloads,
      // and every other route 100 kB.
      const size = route.path.endsWith('users\\:batch') ? 1_100_000 : route.path.startsWith('/codec/') ? 4_200_000 : 110_000;
      const body = JSON.stringify({ padding: 'x'.repeat(size) });
      const response = await harness.api[route.method.toLowerCase() as 'post'](route.url).set('content-type', 'application/json').send(body);
      expect({ route: `${route.method} ${route.path}`, status: response.status }).toEqual({ route: `${route.method} ${route.path}`, status: 413 });
    }
  });

  test('helmet headers on every route', async () => {
    for (const route of requestableRoutes()) {
      const response = await harness.api[route.method.toLowerCase() as 'get'](route.url);
      const name = `${route.method} ${route.path}`;
      expect({ name, policy: typeof response.headers['content-security-policy'] }).toEqual({ name, policy: 'string' });
      expect({ name, nosniff: response.headers['x-content-type-options'] }).toEqual({ name, nosniff: 'nosniff' });
    }
  });
});

/** POSTs that create a workflow, a link or an email, and so take an Idempotency-Key (api/idempotency.ts). */
const CREATING_POSTS = [
  '/v1/accounts/{accountId}/environments/{environment}/users',
  '/v1/accounts/{accountId}/users',
  '/v1/accounts/{accountId}/environments/{environment}/users:batch',
  '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/invitation/resend',
  '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/deactivate',
  '/v1/accounts/{accountId}/environments/{environment}/users/{userId}/reactivate',
  '/v1/operator/users/deactivate',
  '/v1/accounts/{accountId}/sso/okta/onboarding',
];

describe('Idempotency-Key in OpenAPI', () => {
  test.each(CREATING_POSTS)('documented on POST %s', async (path) => {
    const document = (await harness.api.get('/v1/openapi.json')).body;
    const parameters: { in: string; name: string; required?: boolean }[] = document.paths[path].post.parameters ?? [];
    const header = parameters.find((parameter) => parameter.in === 'header' && parameter.name === 'Idempotency-Key');
    expect(header).toBeDefined();
    expect(header!.required).not.toBe(true);
    expect(Object.keys(document.paths[path].post.responses)).toContain('422');
  });
});

describe('interactive docs', () => {
  test('page loads scripts from this server', async () => {
    const page = await harness.api.get('/docs');
    expect(page.status).toBe(200);
    expect(page.type).toBe('text/html');
    const policy = page.headers['content-security-policy'] as string;
    const scriptSources = /script-src ([^;]*)/.exec(policy)?.[1];
    expect(scriptSources).toBe("'self'");
    expect(page.text).not.toMatch(/<script>(?!<)/);

    const scripts = [...page.text.matchAll(/<script src="([^"]+)"/g)].map((match) => match[1]!);
    expect(scripts).toEqual(['/docs/assets/swagger-ui-bundle.js', '/docs/swagger-initializer.js']);
    for (const script of scripts) {
      const response = await harness.api.get(script);
      expect(response.status).toBe(200);
      expect(response.type).toBe('text/javascript');
    }
    expect((await harness.api.get('/docs/assets/swagger-ui.css')).status).toBe(200);
    // Only the files the page uses; the package's demo page is not served.
    expect((await harness.api.get('/docs/assets/index.html')).status).toBe(404);
  });

  test('renders every path in Chromium', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const offsite: string[] = [];
    const problems: string[] = [];
    // Nothing may leave this server: a CDN or a validator request would be a bug, so it is aborted and recorded.
    await context.route('**/*', async (route) => {
      if (route.request().url().startsWith(baseUrl)) {
        await route.continue();
        return;
      }
      offsite.push(route.request().url());
      await route.abort();
    });
    page.on('console', (message) => {
      if (message.type() === 'error') {
        problems.push(message.text());
      }
    });
    page.on('pageerror', (error) => problems.push(error.message));

    await page.goto(`${baseUrl}/docs`);
    await page.waitForSelector('.opblock', { timeout: 30_000 });
    const shownPaths = await page.$$eval('.opblock-summary-path', (elements) => elements.map((element) => element.getAttribute('data-path')));
    const document = (await harness.api.get('/v1/openapi.json')).body;

    expect(new Set(shownPaths)).toEqual(new Set(Object.keys(document.paths)));
    expect(offsite).toEqual([]);
    expect(problems).toEqual([]);
    await context.close();
  });
});
