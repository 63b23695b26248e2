import { expect } from '@jest/globals';

import { InvitationWorkflows, invitationWorkflowId } from '../../api/invitation-workflows.js';
import { deriveKey } from '../../lib/secrets.js';
import { uniqueEmail, type Harness } from './harness.js';

/**
 * Makes an active member of the sandbox and invites them through the invitation workflow directly,
 * past the API's up-front check, as a batch row for a member does. Checks that the start fails with
 * `already_member` and the workflow ends `rejected`, and returns the workflow id.
 */
export async function startRejectedInvitation(harness: Harness, label: string): Promise<string> {
  const email = uniqueEmail(label);
  await harness.addMember(email, ['customer_viewer']);
  const idKey = deriveKey(harness.config.appSecret, 'workflow-id');
  const workflows = new InvitationWorkflows(harness.temporal, harness.config, idKey);
  const start = workflows.start({
    accountId: harness.seed.accountId,
    environmentId: harness.seed.sandboxId,
    environment: 'sandbox',
    email,
    roles: ['customer_viewer'],
    invitedByUserId: harness.seed.adminUserId,
  });
  await expect(start).rejects.toMatchObject({ status: 409, code: 'already_member' });

  const workflowId = invitationWorkflowId(idKey, harness.seed.accountId, 'sandbox', email);
  expect((await harness.temporal.workflow.getHandle(workflowId).result()).outcome).toBe('rejected');
  return workflowId;
}
