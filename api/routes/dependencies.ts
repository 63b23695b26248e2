import type { ApiDependencies } from '../context.js';
import type { InvitationWorkflows } from '../invitation-workflows.js';

/** Dependencies that every router factory receives. */
export interface RouterDependencies extends ApiDependencies {
  invitations: InvitationWorkflows;
}
