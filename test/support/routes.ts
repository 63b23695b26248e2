import type { Express } from 'express';

/** One route of the app: an upper-case HTTP method and the full Express path pattern. */
export interface AppRoute {
  method: string;
  path: string;
}

/** The parts of router 2.x's Layer that the walk reads; `rawPath` is the string given to use() or route(). */
interface Layer {
  rawPath?: string | string[] | RegExp;
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
}

function joinPath(prefix: string, path: string): string {
  const joined = `${prefix}/${path}`.replace(/\/{2,}/g, '/');
  return joined.length > 1 ? joined.replace(/\/$/, '') : joined;
}

function pathsOf(raw: string | string[] | RegExp | undefined): string[] {
  if (raw === undefined) {
    return ['/'];
  }
  if (raw instanceof RegExp) {
    throw new Error(`route enumeration does not handle regular-expression paths such as ${raw}`);
  }
  return Array.isArray(raw) ? raw : [raw];
}

function walk(stack: Layer[], prefix: string, routes: AppRoute[]): void {
  for (const layer of stack) {
    if (layer.route) {
      for (const path of pathsOf(layer.route.path)) {
        for (const method of Object.keys(layer.route.methods).filter((name) => layer.route!.methods[name])) {
          routes.push({ method: method.toUpperCase(), path: joinPath(prefix, path) });
        }
      }
    } else if (layer.handle.stack) {
      for (const path of pathsOf(layer.rawPath)) {
        walk(layer.handle.stack, joinPath(prefix, path), routes);
      }
    }
  }
}

/**
 * Lists every route of an Express 5 app by walking its router stack, including routers mounted with
 * use(). Escapes in paths (`users\:batch`) are removed, so paths read as they are requested.
 */
export function listRoutes(app: Express): AppRoute[] {
  const routes: AppRoute[] = [];
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '', routes);
  const unique = new Map(routes.map((route) => {
    const path = route.path.replace(/\\/g, '');
    return [`${route.method} ${path}`, { method: route.method, path }];
  }));
  return [...unique.values()];
}
