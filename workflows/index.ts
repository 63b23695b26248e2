// The worker bundles this file and everything it imports into the deterministic workflow sandbox.
export { invitationWorkflow } from './invitation.js';
export * from './member-changes.js';
export * from './account-settings.js';
export * from './bulk.js';
export * from './sso.js';
