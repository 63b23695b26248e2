import { performance } from 'node:perf_hooks';

import { ensureActiveMember } from '../db/bootstrap.js';
import { hashPassword, passwordHashLimit, verifyPassword } from '../lib/passwords.js';
import { ErrorTally, timedFetch } from './http.js';
import { INVITE_ROLES, type BenchContext } from './invites.js';
import { measureResources, type ResourceUse } from './resources.js';
import { BENCH_ACCOUNT } from './stack.js';
import { summarize, type Summary } from './stats.js';

const PASSWORD = 'correct horse battery staple';
const WARMUP_REQUESTS = 5;
/** Concurrent sign-ins in one burst, as the target sets it. */
const BURST_SIZE = 20;
/** The people the sign-in benchmarks use, active members of the benchmark environment. */
export const SIGN_IN_EMAILS = Array.from({ length: BURST_SIZE }, (_, index) => `signin-${index}@bench.example`);

export interface SignInResult {
  /** The argon2id parameters in use, read from a stored hash. */
  argon2Parameters: string;
  /** Hashes and verifications that run at once (`passwordHashLimit`); the rest wait in line. */
  hashConcurrency: number;
  /** `POST /v1/auth/login` one after another. */
  login: Summary | undefined;
  /** The baseline: `verifyPassword` alone in this process, as many times. */
  verifyOnly: Summary | undefined;
  /** Sign-ins sent `BURST_SIZE` at a time, `bursts` times. */
  bursts: number;
  burstLogin: Summary | undefined;
  /** `GET …/users?limit=50` one after another while nothing else runs, and during the bursts. */
  getAlone: Summary | undefined;
  getDuringBursts: Summary | undefined;
  errors: ErrorTally;
  resources: ResourceUse;
}

/**
 * Times password sign-in against the argon2id verification alone, then sends bursts of concurrent
 * sign-ins while another loop times a member-list GET, to show whether hashing stalls other requests.
 */
export async function runSignIn(context: BenchContext, input: { requests: number; bursts: number }): Promise<SignInResult> {
  const { stack, signal } = context;
  const errors = new ErrorTally();
  const loginUrl = `${stack.baseUrl}/v1/auth/login`;
  const getUrl = `${stack.baseUrl}/v1/accounts/${BENCH_ACCOUNT.id}/environments/${BENCH_ACCOUNT.environment}/users?limit=50`;

  // People with a password and an active membership; each sign-in of the burst uses another one.
  const passwordHash = await hashPassword(PASSWORD);
  const emails = SIGN_IN_EMAILS;
  for (const email of emails) {
    const { userId } = await ensureActiveMember(stack.db, { accountId: BENCH_ACCOUNT.id, environmentId: stack.environmentId, email, roles: INVITE_ROLES });
    await stack.db('users').where({ id: userId }).update({ password_hash: passwordHash });
  }

  const login = async (email: string): Promise<number | undefined> => {
    const body = JSON.stringify({ email, password: PASSWORD });
    const response = await timedFetch(loginUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body }, signal);
    if (response.status !== 200) {
      errors.add(`login HTTP ${response.status}`, response.body);
      return undefined;
    }
    return response.durationMs;
  };
  const getOnce = async (): Promise<number | undefined> => {
    const response = await timedFetch(getUrl, { headers: { authorization: `Bearer ${stack.adminKey}` } }, signal);
    if (response.status !== 200) {
      errors.add(`GET HTTP ${response.status}`, response.body);
      return undefined;
    }
    return response.durationMs;
  };
  const keep = (values: (number | undefined)[]) => values.filter((value): value is number => value !== undefined);

  const stopMeasuring = await measureResources(stack.cpuSources);

  const logins: (number | undefined)[] = [];
  for (let request = 0; request < WARMUP_REQUESTS + input.requests && !signal.aborted; request += 1) {
    const duration = await login(emails[request % emails.length]!);
    if (request >= WARMUP_REQUESTS) {
      logins.push(duration);
    }
  }

  const verifications: number[] = [];
  for (let sample = 0; sample < input.requests && !signal.aborted; sample += 1) {
    const startedAt = performance.now();
    await verifyPassword(passwordHash, PASSWORD);
    verifications.push(performance.now() - startedAt);
  }

  const getsAlone: (number | undefined)[] = [];
  for (let request = 0; request < WARMUP_REQUESTS + input.requests && !signal.aborted; request += 1) {
    const duration = await getOnce();
    if (request >= WARMUP_REQUESTS) {
      getsAlone.push(duration);
    }
  }

  const burstLogins: (number | undefined)[] = [];
  const getsDuring: (number | undefined)[] = [];
  for (let burst = 0; burst < input.bursts && !signal.aborted; burst += 1) {
    let burstDone = false;
    const getting = (async () => {
      while (!burstDone && !signal.aborted) {
        getsDuring.push(await getOnce());
      }
    })();
    burstLogins.push(...(await Promise.all(emails.map(login))));
    burstDone = true;
    await getting;
  }

  return {
    argon2Parameters: passwordHash.split('$').slice(1, 4).join('$'),
    hashConcurrency: passwordHashLimit.concurrency,
    login: summarize(keep(logins)),
    verifyOnly: summarize(verifications),
    bursts: input.bursts,
    burstLogin: summarize(keep(burstLogins)),
    getAlone: summarize(keep(getsAlone)),
    getDuringBursts: summarize(keep(getsDuring)),
    errors,
    resources: await stopMeasuring(),
  };
}
