import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { bundleWorkflowCode } from '@temporalio/worker';

/**
 * Second half of `npm run build`: bundles the workflow code into dist/workflow-bundle.js, which
 * worker/main.js loads when present instead of bundling at every start. It bundles the TypeScript
 * sources, so it needs the development dependencies and runs before they are pruned.
 */

const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
const BUNDLE_PATH = fileURLToPath(new URL('../dist/workflow-bundle.js', import.meta.url));

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH });
  await mkdir(dirname(BUNDLE_PATH), { recursive: true });
  await writeFile(BUNDLE_PATH, code);
  process.stdout.write(`Wrote ${BUNDLE_PATH} (${(Buffer.byteLength(code) / 1024 / 1024).toFixed(2)} MiB)\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`Bundling the workflow code failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
