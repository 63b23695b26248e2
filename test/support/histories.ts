import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import type { Client } from '@temporalio/client';

/** Where test/replay.test.ts finds the histories it replays. */
export const HISTORY_DIR = fileURLToPath(new URL('../histories/', import.meta.url));

/**
 * Waits for a workflow to close and writes its history to `test/histories/<name>.json` with
 * `temporal workflow show --output json`. The CLI writes the same JSON that operators export from a
 * production server, so such histories can be added as they are.
 */
export async function recordHistory(temporal: Client, address: string, name: string, workflowId: string): Promise<void> {
  const handle = temporal.workflow.getHandle(workflowId);
  await handle.result();
  const json = execFileSync(
    process.env.LIFECYCLE_TEST_TEMPORAL_CLI!,
    ['workflow', 'show', '--workflow-id', workflowId, '--run-id', (await handle.describe()).runId, '--output', 'json', '--address', address],
    { encoding: 'utf8' },
  );
  await writeFile(`${HISTORY_DIR}${name}.json`, json.endsWith('\n') ? json : `${json}\n`);
}
