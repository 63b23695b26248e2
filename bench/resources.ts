import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * CPU use over one measured run, read from Linux's /proc. Percentages are of one CPU, so on two CPUs
 * the machine tops out at 200. "Other processes" is the machine's busy time minus the three parts of
 * the stack, so a figure well above zero means something outside the benchmark competed for the CPUs.
 */
export interface ResourceUse {
  /** This process: the API, the load generator and the fake SendGrid. */
  benchProcessCpuPercent: number | undefined;
  /** The product's worker process, and the baseline's worker process. */
  workerCpuPercent: number | undefined;
  baselineWorkerCpuPercent: number | undefined;
  temporalServerCpuPercent: number | undefined;
  /** The Postgres backends connected to the benchmark's database. */
  postgresCpuPercent: number | undefined;
  otherCpuPercent: number | undefined;
  machineCpuPercent: number | undefined;
  /** Delay of this process's event loop, in milliseconds. */
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
}

/** Processes of the stack, apart from this one, whose CPU time the figures split out. */
export interface CpuSources {
  temporalServerPid: number | undefined;
  workerPid: number;
  baselineWorkerPid: number;
  /** Returns the process ids of the Postgres backends of the benchmark's database. */
  postgresPids: () => Promise<number[]>;
}

interface MachineTicks {
  busy: number;
  total: number;
  cpus: number;
}

/** Reads the busy and total clock ticks of all CPUs from /proc/stat, or undefined off Linux. */
function readMachineTicks(): MachineTicks | undefined {
  try {
    const lines = readFileSync('/proc/stat', 'utf8').split('\n');
    const fields = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
    // The fields are user, nice, system, idle, iowait, irq, softirq and steal. Idle and iowait are not busy.
    const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    const cpus = lines.filter((line) => /^cpu\d+ /.test(line)).length;
    return { busy: total - idle, total, cpus };
  } catch {
    return undefined;
  }
}

/** Returns the user and system clock ticks a process has used, or undefined when it is gone. */
function readProcessTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces, so the fields are counted from its closing bracket.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/**
 * Returns a process's resident memory (VmRSS) and its peak (VmHWM) in MiB from /proc/<pid>/status,
 * or undefined when the process is gone or there is no /proc.
 */
export function readResidentMemory(pid: number): { rssMiB: number; peakRssMiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    const rss = kib('VmRSS');
    const peak = kib('VmHWM');
    return Number.isFinite(rss) && Number.isFinite(peak) ? { rssMiB: rss / 1024, peakRssMiB: peak / 1024 } : undefined;
  } catch {
    return undefined;
  }
}

/** Returns the id of this process's child whose command name is `name`, or undefined. */
export function findChildProcess(name: string): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) {
        continue;
      }
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const command = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const parentPid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parentPid === process.pid && command === name) {
        return Number(entry);
      }
    }
  } catch {
    // No /proc: the CPU split is left out.
  }
  return undefined;
}

/** Returns the machine's CPU use over `ms` milliseconds, as a percentage of one CPU. */
export async function sampleMachineCpu(ms: number): Promise<{ percent: number; cpus: number } | undefined> {
  const start = readMachineTicks();
  await sleep(ms);
  const end = readMachineTicks();
  if (!start || !end || end.total <= start.total) {
    return undefined;
  }
  return { percent: (100 * end.cpus * (end.busy - start.busy)) / (end.total - start.total), cpus: end.cpus };
}

async function readPostgresTicks(sources: CpuSources): Promise<Map<number, number>> {
  const ticks = new Map<number, number>();
  for (const pid of await sources.postgresPids()) {
    const value = readProcessTicks(pid);
    if (value !== undefined) {
      ticks.set(pid, value);
    }
  }
  return ticks;
}

/** Starts measuring; the returned function stops and returns the figures. */
export async function measureResources(sources: CpuSources): Promise<() => Promise<ResourceUse>> {
  const machineAtStart = readMachineTicks();
  const selfAtStart = readProcessTicks(process.pid);
  const temporalAtStart = sources.temporalServerPid === undefined ? undefined : readProcessTicks(sources.temporalServerPid);
  const workerAtStart = readProcessTicks(sources.workerPid);
  const baselineAtStart = readProcessTicks(sources.baselineWorkerPid);
  const postgresAtStart = await readPostgresTicks(sources);
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();

  return async () => {
    loopDelay.disable();
    const machineAtEnd = readMachineTicks();
    const selfAtEnd = readProcessTicks(process.pid);
    const temporalAtEnd = sources.temporalServerPid === undefined ? undefined : readProcessTicks(sources.temporalServerPid);
    const workerAtEnd = readProcessTicks(sources.workerPid);
    const baselineAtEnd = readProcessTicks(sources.baselineWorkerPid);
    const postgresAtEnd = await readPostgresTicks(sources);

    const delay = { eventLoopDelayP99Ms: loopDelay.percentile(99) / 1e6, eventLoopDelayMaxMs: loopDelay.max / 1e6 };
    if (!machineAtStart || !machineAtEnd || machineAtEnd.total <= machineAtStart.total) {
      const none = undefined;
      return { benchProcessCpuPercent: none, workerCpuPercent: none, baselineWorkerCpuPercent: none, temporalServerCpuPercent: none, postgresCpuPercent: none, otherCpuPercent: none, machineCpuPercent: none, ...delay };
    }

    // Clock ticks per CPU that passed, so that ticks divided by it are a share of one CPU.
    const ticksPerCpu = (machineAtEnd.total - machineAtStart.total) / machineAtEnd.cpus;
    const percent = (ticks: number) => (100 * ticks) / ticksPerCpu;
    const delta = (end: number | undefined, start: number | undefined) =>
      end === undefined || start === undefined ? undefined : percent(end - start);

    // A backend that connected during the run used all its time in the run. One that disconnected is missed.
    let postgresTicks = 0;
    for (const [pid, end] of postgresAtEnd) {
      postgresTicks += end - (postgresAtStart.get(pid) ?? 0);
    }

    const machine = percent(machineAtEnd.busy - machineAtStart.busy);
    const bench = delta(selfAtEnd, selfAtStart);
    const temporal = delta(temporalAtEnd, temporalAtStart);
    const worker = delta(workerAtEnd, workerAtStart);
    const baseline = delta(baselineAtEnd, baselineAtStart);
    const postgres = percent(postgresTicks);
    const parts = [bench, worker, baseline, temporal];
    return {
      benchProcessCpuPercent: bench,
      workerCpuPercent: worker,
      baselineWorkerCpuPercent: baseline,
      temporalServerCpuPercent: temporal,
      postgresCpuPercent: postgres,
      otherCpuPercent: parts.some((part) => part === undefined)
        ? undefined
        : Math.max(0, machine - postgres - parts.reduce<number>((sum, part) => sum + part!, 0)),
      machineCpuPercent: machine,
      ...delay,
    };
  };
}
