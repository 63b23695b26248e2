import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench:profile -- <file.cpuprofile> [rows]`: sums a V8 CPU profile's self time by function
 * and by package, so that a benchmark's profile can be read without a browser. Node writes one file per
 * thread: the worker's main thread runs activities, and its worker threads run workflow code. Code
 * without a URL is V8 itself, such as the garbage collector or native calls.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_ROWS = 25;

/** Returns a short name for a script: its package, the repository folder, or the node built-in. */
function origin(url: string): string {
  if (url === '') {
    return '(V8 and native)';
  }
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (packageMatch) {
    return packageMatch[1]!;
  }
  if (path.startsWith('node:')) {
    return 'node built-ins';
  }
  return path.startsWith(REPO_ROOT) ? relative(REPO_ROOT, path).split('/')[0]! : path;
}

function addTo(totals: Map<string, number>, key: string, microseconds: number): void {
  totals.set(key, (totals.get(key) ?? 0) + microseconds);
}

function table(title: string, totals: Map<string, number>, all: number, rows: number): string {
  const lines = [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, rows)
    .map(([name, microseconds]) => `| ${name} | ${(microseconds / 1000).toFixed(0)} | ${((100 * microseconds) / all).toFixed(1)} |`);
  return [`| ${title} | self time (ms) | share (%) |`, '| --- | --- | --- |', ...lines].join('\n');
}

async function main(): Promise<number> {
  const [file, rowsText] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('Usage: npm run bench:profile -- <file.cpuprofile> [rows]\n');
    return 64;
  }
  const rows = rowsText === undefined ? DEFAULT_ROWS : Number(rowsText);
  if (!Number.isInteger(rows) || rows < 1) {
    process.stderr.write(`rows must be a whole number of at least 1, got "${rowsText}".\n`);
    return 64;
  }
  let profile: Profile;
  try {
    profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
  } catch (error) {
    process.stderr.write(`Failed to read ${file} as a CPU profile: ${(error as Error).message}\n`);
    return 1;
  }
  if (!Array.isArray(profile.nodes) || !Array.isArray(profile.samples) || !Array.isArray(profile.timeDeltas)) {
    process.stderr.write(`${file} is not a V8 CPU profile: it lacks nodes, samples or timeDeltas.\n`);
    return 1;
  }
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));

  // Each sample is charged the time until the next sample.
  const byFunction = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  let all = 0;
  profile.samples.forEach((id, index) => {
    const microseconds = profile.timeDeltas[index + 1] ?? 0;
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    if (functionName === '(idle)' || functionName === '(program)') {
      return;
    }
    all += microseconds;
    addTo(byFunction, `${functionName || '(anonymous)'} ${origin(url)}${url ? `:${lineNumber + 1}` : ''}`, microseconds);
    addTo(byOrigin, functionName.startsWith('(') ? functionName : origin(url), microseconds);
  });

  const wall = (profile.endTime - profile.startTime) / 1000;
  process.stdout.write(
    `${file}: ${(all / 1000).toFixed(0)} ms of CPU on this thread outside idle time, over ${(wall / 1000).toFixed(1)} s\n\n` +
      `${table('package or folder', byOrigin, all, rows)}\n\n${table('function', byFunction, all, rows)}\n`,
  );
  return 0;
}

process.exitCode = await main();
