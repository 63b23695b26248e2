import { createRequire } from 'node:module';
import { dirname } from 'node:path';

import express, { Router } from 'express';

import { buildOpenApiDocument } from '../openapi.js';

/** The folder of the swagger-ui-dist package, whose prebuilt files the docs page loads from this server. */
const SWAGGER_UI_DIST = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

const DOCS_ASSETS = new Set(['/swagger-ui.css', '/swagger-ui-bundle.js']);

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Lifecycle API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-initializer.js"></script>
</body>
</html>
`;

// A script file rather than an inline script, because helmet's Content-Security-Policy allows only
// scripts from this origin. validatorUrl: null stops Swagger UI from sending the document's URL to
// validator.swagger.io for its validity badge.
const DOCS_INITIALIZER = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/v1/openapi.json',
    dom_id: '#swagger-ui',
    validatorUrl: null,
    deepLinking: true,
  });
});
`;

/** Serves the OpenAPI document and interactive docs (Swagger UI) at /docs. */
export function docsRouter(appBaseUrl: string): Router {
  const router = Router();
  const openApiDocument = buildOpenApiDocument(appBaseUrl);

  router.get(['/v1/openapi.json', '/openapi.json'], (_request, response) => {
    response.json(openApiDocument);
  });

  router.get('/docs', (_request, response) => {
    response.type('html').send(DOCS_PAGE);
  });

  router.get('/docs/swagger-initializer.js', (_request, response) => {
    response.type('js').send(DOCS_INITIALIZER);
  });

  // Only the two files the page loads: the package also contains a demo page that points at a remote example API.
  const serveAsset = express.static(SWAGGER_UI_DIST, { index: false, maxAge: '1h' });
  router.use('/docs/assets', (request, response, next) => {
    if (DOCS_ASSETS.has(request.path)) {
      serveAsset(request, response, next);
      return;
    }
    next();
  });

  return router;
}
