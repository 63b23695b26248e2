import type { Express } from 'express';
import { match, type MatchFunction } from 'path-to-regexp';

/** One route the Express app serves, with its path in Express syntax (`/v1/accounts/:accountId`). */
export interface RegisteredRoute {
  method: string;
  path: string;
}

/** The part of router 2.x that `listRoutes()` returns; @types/express does not declare it yet. */
interface ListedRoute {
  path: string | RegExp;
  methods: string[] | undefined;
  router: RouterWithList | undefined;
}

interface RouterWithList {
  listRoutes(): ListedRoute[];
}

function joinPaths(prefix: string, path: string): string {
  const joined = `${prefix.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
  return joined.length > 1 ? joined.replace(/\/+$/, '') : joined;
}

function collect(router: RouterWithList, prefix: string, routes: RegisteredRoute[]): void {
  for (const listed of router.listRoutes()) {
    if (typeof listed.path !== 'string') {
      throw new Error(`The route inventory cannot describe the regular-expression route ${String(listed.path)}.`);
    }
    const path = joinPaths(prefix, listed.path);
    if (listed.router) {
      collect(listed.router, path, routes);
      continue;
    }
    for (const method of listed.methods ?? []) {
      // Router 2.x responds to HEAD for every GET route by itself and lists it, but it is not a route of its own.
      if (method !== 'HEAD' || !listed.methods!.includes('GET')) {
        routes.push({ method, path });
      }
    }
  }
}

/**
 * Lists every route that `app` registers, by walking its router and the routers mounted on it with
 * router 2.x `listRoutes()`. Plain middleware, such as the body parsers, is not listed.
 */
export function listRegisteredRoutes(app: Express): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  collect((app as unknown as { router: RouterWithList }).router, '', routes);
  return routes;
}

/** Converts an Express path to an OpenAPI one: `/users/:userId` to `/users/{userId}`, `users\:batch` to `users:batch`. */
export function toOpenApiPath(expressPath: string): string {
  return expressPath.replace(/(?<!\\):([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}').replace(/\\:/g, ':');
}

/**
 * Finds the route template of a request path, so that metrics and logs can name a route without the
 * ids in its path. The matchers are compiled on first use, after every route is registered.
 */
export class RouteTemplates {
  private matchers?: { method: string; template: string; matches: MatchFunction<object> }[];

  constructor(private readonly app: Express) {}

  /** Returns the OpenAPI-style template of the route that serves `method` and `path`, or undefined. */
  find(method: string, path: string): string | undefined {
    this.matchers ??= listRegisteredRoutes(this.app).map((route) => ({
      method: route.method,
      template: toOpenApiPath(route.path),
      matches: match(route.path, { decode: false }),
    }));
    const wanted = method === 'HEAD' ? 'GET' : method;
    return this.matchers.find((route) => route.method === wanted && route.matches(path) !== false)?.template;
  }
}
