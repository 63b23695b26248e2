import type { ApiDependencies } from '../context.js';
import type { InvitationWorkflows } from '../invitation-workflows.js';

/** What every router factory receives. */
export interface RouterDependencies extends ApiDependencies {
  invitations: InvitationWorkflows;
}
