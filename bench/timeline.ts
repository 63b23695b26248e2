import type { Client } from '@temporalio/client';

import type { InviteRecord } from './invites.js';
import { summarize, type Summary } from './stats.js';

type History = Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
type HistoryEvent = NonNullable<History['events']>[number];

/**
 * The parts of one invite's time to 202, in the order they happen. A hand-off is the time from the
 * server scheduling a task to a worker poll receiving it. The recording runs inside the first workflow
 * task. When it fails and is retried, the invite has more tasks, and only the first is split out. A task's run ends when the server has
 * recorded the worker's completion call. The first and last parts compare the client's `Date.now()`
 * with the Temporal server's event times, which works because both run on this machine.
 */
export const TIMELINE_SEGMENTS = {
  requestToStart: 'request sent → workflow started (HTTP, auth, checks, start call)',
  firstTaskHandOff: 'workflow started → 1st workflow task started (hand-off)',
  firstTaskRun: '1st workflow task started → completed (worker; recordInvitation runs as a local activity, the update completes)',
  updateToResponse: 'update completed → 202 read (update result, member read, response)',
} as const;

export type TimelineSegment = keyof typeof TIMELINE_SEGMENTS;

export interface InviteTimeline {
  /** Invites whose history had every event the segments need. */
  sampled: number;
  segments: Record<TimelineSegment, Summary | undefined>;
}

function toNumber(value: { toString(): string } | number | null | undefined): number | undefined {
  if (value === null || value === undefined) {
    return undefined;
  }
  return typeof value === 'number' ? value : Number(value.toString());
}

function eventTimeMs(event: HistoryEvent | undefined): number | undefined {
  const seconds = toNumber(event?.eventTime?.seconds);
  if (seconds === undefined) {
    return undefined;
  }
  return seconds * 1000 + (event?.eventTime?.nanos ?? 0) / 1e6;
}

/** Returns the segment durations of one invite in milliseconds, or undefined when an event is missing. */
function segmentsOf(invite: InviteRecord, events: HistoryEvent[]): Record<TimelineSegment, number> | undefined {
  const idOf = (event: HistoryEvent | undefined) => toNumber(event?.eventId) ?? Number.POSITIVE_INFINITY;
  const after = (event: HistoryEvent | undefined, matches: (candidate: HistoryEvent) => unknown) =>
    events.find((candidate) => idOf(candidate) > idOf(event) && matches(candidate));

  const started = events.find((event) => event.workflowExecutionStartedEventAttributes);
  const firstTaskStarted = after(started, (event) => event.workflowTaskStartedEventAttributes);
  const firstTaskCompleted = after(firstTaskStarted, (event) => event.workflowTaskCompletedEventAttributes);
  const updateCompleted = events.find((event) => event.workflowExecutionUpdateCompletedEventAttributes);

  const times = [started, firstTaskStarted, firstTaskCompleted, updateCompleted].map(eventTimeMs);
  if (times.some((time) => time === undefined)) {
    return undefined;
  }
  const [startedAt, firstStartedAt, firstCompletedAt, updateCompletedAt] = times as number[];
  return {
    requestToStart: startedAt! - invite.sentAtEpochMs,
    firstTaskHandOff: firstStartedAt! - startedAt!,
    firstTaskRun: firstCompletedAt! - firstStartedAt!,
    updateToResponse: invite.receivedAtEpochMs - updateCompletedAt!,
  };
}

/** Splits the invites' time to 202 into segments, from each invitation workflow's event history. */
export async function inviteTimeline(temporal: Client, invites: InviteRecord[], signal: AbortSignal): Promise<InviteTimeline> {
  const samples = Object.fromEntries(Object.keys(TIMELINE_SEGMENTS).map((name) => [name, [] as number[]])) as Record<
    TimelineSegment,
    number[]
  >;
  let sampled = 0;

  for (const invite of invites) {
    if (signal.aborted) {
      break;
    }
    const history = await temporal.workflow.getHandle(invite.workflowId).fetchHistory();
    const segments = segmentsOf(invite, history.events ?? []);
    if (!segments) {
      continue;
    }
    sampled += 1;
    for (const name of Object.keys(segments) as TimelineSegment[]) {
      samples[name].push(segments[name]);
    }
  }

  const segments = Object.fromEntries(
    (Object.keys(samples) as TimelineSegment[]).map((name) => [name, summarize(samples[name])]),
  ) as Record<TimelineSegment, Summary | undefined>;
  return { sampled, segments };
}
