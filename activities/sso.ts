import type { ActivityDependencies } from './dependencies.js';

/** Activities of SSO onboarding. */
export function createSsoActivities(_dependencies: ActivityDependencies) {
  return {};
}

export type SsoActivities = ReturnType<typeof createSsoActivities>;
