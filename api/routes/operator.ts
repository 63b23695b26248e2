import { Router } from 'express';

import type { RouterDependencies } from './dependencies.js';

/** Platform operator routes under `/v1/operator`, for operator keys only. */
export function operatorRouter(_dependencies: RouterDependencies): Router {
  return Router();
}
