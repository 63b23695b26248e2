import { ApplicationFailure, Context } from '@temporalio/activity';

/** Postgres error code of a unique-constraint violation. */
export const UNIQUE_VIOLATION = '23505';

/** Creates a failure that no retry can fix, with a stable type that workflows and the API can match. */
export function reject(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** Returns the workflow execution that scheduled the current activity. */
export function currentWorkflow(): { workflowId: string; runId: string } {
  const execution = Context.current().info.workflowExecution;
  if (!execution) {
    throw reject('NotInWorkflow', 'This activity must run inside a workflow.');
  }
  return { workflowId: execution.workflowId, runId: execution.runId };
}
