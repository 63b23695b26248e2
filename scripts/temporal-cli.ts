import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * Finds a Temporal CLI, whose `temporal server start-dev` runs a local Temporal Service, or builds one
 * from source with Go. The dev command, the test setup and CI use it; scripts/ensure-temporal-cli.sh
 * follows the same order for shell callers and pins the same version.
 */

const execFileAsync = promisify(execFile);

/** The CLI release that is built when none is found; it bundles Temporal Server 1.29.1 and UI 2.42.1. */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal';

/** Upper bound for `go install`; a first build downloads modules and compiles for a few minutes. */
const BUILD_TIMEOUT_MS = 20 * 60_000;
const VERSION_CHECK_TIMEOUT_MS = 15_000;

export interface FindTemporalCliOptions {
  /** Folder that contains an earlier build and receives a new one, such as `.data/bin`. */
  cacheDir: string;
  /** Whether to build the CLI with `go install` when none is found and Go is on PATH. Defaults to true. */
  build?: boolean;
  /** Receives progress messages, such as the notice that a build has started. */
  log?: (message: string) => void;
  env?: NodeJS.ProcessEnv;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Returns the first executable called `name` in the PATH folders, like `command -v`. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const folders = (env.PATH ?? '').split(delimiter).filter(Boolean);
  return folders.map((folder) => join(folder, name)).find(isExecutableFile);
}

/** Runs `temporal --version` and returns its output, so that a broken or foreign binary is caught early. */
export async function temporalCliVersion(cliPath: string): Promise<string> {
  const { stdout } = await execFileAsync(cliPath, ['--version'], { timeout: VERSION_CHECK_TIMEOUT_MS });
  return stdout.trim();
}

async function usable(cliPath: string, log: (message: string) => void): Promise<boolean> {
  try {
    await temporalCliVersion(cliPath);
    return true;
  } catch (error) {
    log(`Skipping ${cliPath}: \`temporal --version\` failed: ${(error as Error).message}`);
    return false;
  }
}

/** Builds the pinned CLI into `cacheDir` and returns its path, or undefined when the build fails. */
async function buildWithGo(goPath: string, cacheDir: string, log: (message: string) => void, env: NodeJS.ProcessEnv) {
  const binDir = resolve(cacheDir);
  await mkdir(binDir, { recursive: true });
  log(
    `Building the Temporal CLI ${TEMPORAL_CLI_VERSION} with Go into ${binDir}. ` +
      'The first build takes a few minutes; later runs reuse it.',
  );
  try {
    await execFileAsync(goPath, ['install', `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}`], {
      env: { ...env, GOBIN: binDir },
      timeout: BUILD_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const { stderr, message } = error as Error & { stderr?: string };
    log(`Building the Temporal CLI failed: ${(stderr || message).trim().split('\n').slice(-15).join('\n')}`);
    return undefined;
  }
  const built = join(binDir, 'temporal');
  return isExecutableFile(built) ? built : undefined;
}

/**
 * Returns the path of a working Temporal CLI, looking in this order: TEMPORAL_CLI_PATH, `temporal` on
 * PATH, an earlier build in `cacheDir`, and a new build with `go install` when Go is on PATH. Returns
 * undefined when none of these yields one. Throws when TEMPORAL_CLI_PATH is set but not an executable,
 * because a path set on purpose should not be passed over silently.
 */
export async function findOrBuildTemporalCli(options: FindTemporalCliOptions): Promise<string | undefined> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((message: string) => process.stderr.write(`${message}\n`));

  const configured = env.TEMPORAL_CLI_PATH;
  if (configured) {
    if (!isExecutableFile(configured)) {
      throw new Error(`TEMPORAL_CLI_PATH is set to "${configured}", which is not an executable file.`);
    }
    return configured;
  }

  const onPath = findOnPath('temporal', env);
  if (onPath && (await usable(onPath, log))) {
    return onPath;
  }

  const cached = join(resolve(options.cacheDir), 'temporal');
  if (isExecutableFile(cached) && (await usable(cached, log))) {
    return cached;
  }

  const go = options.build === false ? undefined : findOnPath('go', env);
  if (go) {
    const built = await buildWithGo(go, options.cacheDir, log, env);
    if (built && (await usable(built, log))) {
      return built;
    }
  }
  return undefined;
}
