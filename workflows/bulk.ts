// Workflows of this area; see activities/bulk.ts for their activities.
export {};
