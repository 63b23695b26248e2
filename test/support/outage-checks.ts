import type { Knex } from 'knex';

import { eventually, type Harness } from './harness.js';

/** Checks shared by the tests that take Postgres away from the API and the worker. */

/** Sends the list-members request of the API as the seeded administrator, to the sandbox. */
export function listMembers(harness: Harness) {
  return harness.api
    .get(`/v1/accounts/${harness.seed.accountId}/environments/sandbox/users`)
    .set('Authorization', `Bearer ${harness.seed.adminKey}`);
}

/** Waits until the workflow has a pending activity of `activityType` on at least its `attempt`th attempt, and returns it. */
export async function waitForActivityAttempt(harness: Harness, workflowId: string, activityType: string, attempt: number) {
  const handle = harness.temporal.workflow.getHandle(workflowId);
  return eventually(
    async () => {
      const { raw } = await handle.describe();
      const activity = raw.pendingActivities?.find((item) => item.activityType?.name === activityType);
      return activity && (activity.attempt ?? 0) >= attempt ? activity : undefined;
    },
    60_000,
    `${activityType} of ${workflowId} to reach attempt ${attempt}`,
  );
}

/**
 * Returns an invitation's email rows (step and status, oldest first) once none is `sending`. The activity
 * marks a row sent right after SendGrid accepts the message, so the row may lag the fake by a moment.
 */
export async function settledEmailRows(db: Knex, invitationId: string): Promise<{ step: string; status: string }[]> {
  return eventually(
    async () => {
      const rows = await db('invitation_emails').where({ invitation_id: invitationId }).orderBy('created_at').select('step', 'status');
      return rows.every((row) => row.status !== 'sending') ? rows : undefined;
    },
    10_000,
    `the email rows of invitation ${invitationId} to leave the sending state`,
  );
}
