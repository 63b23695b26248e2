export { Account } from './Account.js';
export { ApiKey } from './ApiKey.js';
export { AuditEvent } from './AuditEvent.js';
export { Environment } from './Environment.js';
export { Invitation, type InvitationStatus } from './Invitation.js';
export { Membership, MEMBERSHIP_STATUSES, type MembershipStatus } from './Membership.js';
export { Role } from './Role.js';
export { User } from './User.js';
