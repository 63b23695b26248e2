import type { Express } from 'express';

import { listRegisteredRoutes } from '../../api/route-inventory.js';

/** One route of the app: an upper-case HTTP method and the full path pattern. */
export interface AppRoute {
  method: string;
  path: string;
}

/**
 * Lists every route of the app, from its router (see api/route-inventory.ts), with escapes in paths
 * (`users\:batch`) removed, so that paths read as they are requested.
 */
export function listRoutes(app: Express): AppRoute[] {
  return listRegisteredRoutes(app).map((route) => ({ method: route.method, path: route.path.replace(/\\/g, '') }));
}
