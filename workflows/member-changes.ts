// Workflows of this area; see activities/member-changes.ts for their activities.
export {};
