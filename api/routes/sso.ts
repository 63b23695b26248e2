import { Router } from 'express';

import type { RouterDependencies } from './dependencies.js';

/** Single sign-on: connections, Okta onboarding, its self-service page, and sign-in, mounted at the app root. */
export function ssoRouter(_dependencies: RouterDependencies): Router {
  return Router();
}
