import { Router } from 'express';

import type { RouterDependencies } from './dependencies.js';

/** Bulk onboarding and invitations to several environments, mounted at `/v1/accounts/:accountId`. */
export function bulkRouter(_dependencies: RouterDependencies): Router {
  return Router({ mergeParams: true });
}
