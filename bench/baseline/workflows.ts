import { proxyActivities } from '@temporalio/workflow';

import type { BaselineActivities } from './activities.js';

const { noop } = proxyActivities<BaselineActivities>({ startToCloseTimeout: '30s' });

/** The throughput baseline: a workflow that runs one activity that does nothing, then completes. */
export async function noopActivityWorkflow(): Promise<void> {
  await noop();
}
