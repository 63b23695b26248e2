import type { ActivityDependencies } from './dependencies.js';

/** Activities of bulk onboarding and invitations to several environments. */
export function createBulkActivities(_dependencies: ActivityDependencies) {
  return {};
}

export type BulkActivities = ReturnType<typeof createBulkActivities>;
