// Workflows of this area; see activities/sso.ts for their activities.
export {};
