import { fileURLToPath } from 'node:url';

import { NativeConnection, Worker } from '@temporalio/worker';

import { baselineActivities } from './activities.js';

/**
 * The worker of the throughput baseline, run as its own process like the product's worker. It reads
 * TEMPORAL_ADDRESS, BASELINE_TASK_QUEUE and MAX_ACTIVITIES, and uses the SDK's defaults otherwise.
 */
async function main(): Promise<void> {
  const address = process.env.TEMPORAL_ADDRESS;
  const taskQueue = process.env.BASELINE_TASK_QUEUE;
  const maxActivities = Number(process.env.MAX_ACTIVITIES);
  if (!address || !taskQueue || !Number.isInteger(maxActivities) || maxActivities < 1) {
    throw new Error('TEMPORAL_ADDRESS, BASELINE_TASK_QUEUE and MAX_ACTIVITIES (a whole number of at least 1) are required.');
  }

  const connection = await NativeConnection.connect({ address });
  const worker = await Worker.create({
    connection,
    taskQueue,
    workflowsPath: fileURLToPath(new URL('./workflows.ts', import.meta.url)),
    activities: baselineActivities,
    // The same bound as the product's worker, so that both sides run activities alike.
    maxConcurrentActivityTaskExecutions: maxActivities,
  });
  // The benchmark waits for this line, as it does for the product's worker.
  process.stdout.write(`${JSON.stringify({ msg: 'worker started', taskQueue })}\n`);
  await worker.run();
  await connection.close();
}

main().catch((error: unknown) => {
  process.stderr.write(`The baseline worker failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
