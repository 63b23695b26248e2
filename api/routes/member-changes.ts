import { Router } from 'express';

import type { RouterDependencies } from './dependencies.js';

/** Role changes, deactivation and reactivation of one member, under `.../users/:userId`. */
export function memberChangesRouter(_dependencies: RouterDependencies): Router {
  return Router({ mergeParams: true });
}
