// Workflows of this area; see activities/account-settings.ts for their activities.
export {};
