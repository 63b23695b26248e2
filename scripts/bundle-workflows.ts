import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { bundleWorkflowCode } from '@temporalio/worker';

import { FAILURE_CONVERTER_PATH } from '../lib/data-converter.js';

/**
 * Second half of `npm run build`: bundles the workflow code into dist/workflow-bundle.js, which
 * worker/main.js loads when present instead of bundling at every start. It bundles the TypeScript
 * sources, so it needs the development dependencies and runs before they are pruned. It also copies the
 * failure converter, which tsc does not compile, to dist/lib/.
 */

const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
const BUNDLE_PATH = fileURLToPath(new URL('../dist/workflow-bundle.js', import.meta.url));
const BUILT_FAILURE_CONVERTER_PATH = fileURLToPath(new URL('../dist/lib/failure-converter.cjs', import.meta.url));

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, failureConverterPath: FAILURE_CONVERTER_PATH });
  await mkdir(dirname(BUNDLE_PATH), { recursive: true });
  await writeFile(BUNDLE_PATH, code);
  await mkdir(dirname(BUILT_FAILURE_CONVERTER_PATH), { recursive: true });
  await copyFile(FAILURE_CONVERTER_PATH, BUILT_FAILURE_CONVERTER_PATH);
  process.stdout.write(`Wrote ${BUNDLE_PATH} (${(Buffer.byteLength(code) / 1024 / 1024).toFixed(2)} MiB)\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`Bundling the workflow code failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
