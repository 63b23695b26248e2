import type { ActivityDependencies } from './dependencies.js';

/** Activities of email changes and password resets. */
export function createAccountSettingsActivities(_dependencies: ActivityDependencies) {
  return {};
}

export type AccountSettingsActivities = ReturnType<typeof createAccountSettingsActivities>;
