import { performance } from 'node:perf_hooks';

import { hashPassword } from '../lib/passwords.js';
import { tokenIn } from '../test/support/fake-sendgrid.js';
import { ErrorTally, timedFetch } from './http.js';
import { measureResources, type ResourceUse } from './resources.js';
import type { BenchContext, InviteRecord } from './invites.js';
import { summarize, type Summary } from './stats.js';

const PASSWORD = 'correct horse battery staple';
/** Direct calls of hashPassword, to compare with the whole accept request. */
const HASH_SAMPLES = 20;

export interface AcceptRunResult {
  requested: number;
  succeeded: number;
  /** Failed accepts, the unmeasured first ones included. */
  errors: ErrorTally;
  /** Time to the 200 of `POST /v1/invitations/accept`, in milliseconds. */
  latency: Summary | undefined;
  /** One argon2id hash with the project's parameters, called in this process without HTTP, in milliseconds. */
  hashOnly: Summary | undefined;
  /** CPU and event-loop delay while the measured accepts ran. */
  resources: ResourceUse;
}

/** Posts the acceptances one after another. The `warmup` invitations are accepted first and not measured. */
export async function runAccepts(context: BenchContext, invites: { warmup: InviteRecord[]; measured: InviteRecord[] }): Promise<AcceptRunResult> {
  const { stack, signal } = context;
  const url = `${stack.baseUrl}/v1/invitations/accept`;
  const errors = new ErrorTally();
  const latencies: number[] = [];

  const accept = async (invite: InviteRecord): Promise<number | undefined> => {
    const mail = stack.sendgrid.deliveredTo(invite.email)[0];
    if (!mail) {
      errors.add('no invitation email', invite.email);
      return undefined;
    }
    const body = JSON.stringify({ token: tokenIn(mail), password: PASSWORD });
    const response = await timedFetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body }, signal);
    if (response.status !== 200) {
      errors.add(`HTTP ${response.status}`, response.body);
      return undefined;
    }
    return response.durationMs;
  };

  for (const invite of invites.warmup) {
    if (signal.aborted) {
      break;
    }
    await accept(invite);
  }

  const stopMeasuring = await measureResources(stack.cpuSources);
  for (const invite of invites.measured) {
    if (signal.aborted) {
      break;
    }
    const duration = await accept(invite);
    if (duration !== undefined) {
      latencies.push(duration);
    }
  }
  const resources = await stopMeasuring();

  const hashDurations: number[] = [];
  for (let sample = 0; sample < HASH_SAMPLES && !signal.aborted; sample += 1) {
    const startedAt = performance.now();
    await hashPassword(PASSWORD);
    hashDurations.push(performance.now() - startedAt);
  }

  return {
    requested: invites.measured.length,
    succeeded: latencies.length,
    errors,
    latency: summarize(latencies),
    hashOnly: summarize(hashDurations),
    resources,
  };
}
