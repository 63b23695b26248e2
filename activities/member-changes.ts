import type { ActivityDependencies } from './dependencies.js';

/** Activities of role changes, deactivation and reactivation. */
export function createMemberChangeActivities(_dependencies: ActivityDependencies) {
  return {};
}

export type MemberChangeActivities = ReturnType<typeof createMemberChangeActivities>;
