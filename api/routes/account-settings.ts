import { Router } from 'express';

import type { RouterDependencies } from './dependencies.js';

/** Password change, email change and password reset, mounted at the root of the app. */
export function accountSettingsRouter(_dependencies: RouterDependencies): Router {
  return Router();
}
