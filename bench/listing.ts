import type { Knex } from 'knex';

import { ErrorTally, timedFetch } from './http.js';
import { INVITE_ROLES, type BenchContext } from './invites.js';
import { measureResources, type ResourceUse } from './resources.js';
import { BENCH_ACCOUNT } from './stack.js';
import { summarize, type Summary } from './stats.js';

const WARMUP_REQUESTS = 5;
/** The largest page the API serves, used to walk the list for a cursor deep in it. */
const WALK_PAGE_SIZE = 200;
const PAGE_SIZES = [50, 200];

export interface ListVariantResult {
  name: string;
  limit: number;
  /** Members before the page: 0 for the first page. */
  offset: number;
  /** Members on each page, as returned. */
  pageSize: number | undefined;
  errors: ErrorTally;
  latency: Summary | undefined;
}

export interface ListRunResult {
  /** Members before the direct inserts (the administrator and the invitees), the rows inserted, and the sum. */
  members: { existing: number; inserted: number; total: number };
  variants: ListVariantResult[];
  /** `GET /healthz`, which touches no database, as the floor of an HTTP round trip through the app. */
  healthz: ListVariantResult;
  /** CPU and event-loop delay while the list and health requests ran. */
  resources: ResourceUse;
}

/**
 * Adds active members with one role in a single statement until the environment has `target` members.
 * Returns how many it added. Runs ANALYZE afterwards, so that the planner has statistics for the new rows.
 */
async function topUpMembers(db: Knex, environmentId: string, target: number): Promise<{ before: number; inserted: number }> {
  const [row] = await db('memberships').where({ environment_id: environmentId }).count({ count: '*' });
  const before = Number(row?.count ?? 0);
  const missing = Math.max(0, target - before);
  if (missing > 0) {
    await db.raw(
      `WITH new_users AS (
         INSERT INTO users (email)
         SELECT 'member-' || lpad(n::text, 6, '0') || '@bench.example' FROM generate_series(1, ?) AS n
         RETURNING id
       ), new_memberships AS (
         INSERT INTO memberships (user_id, account_id, environment_id, status, activated_at)
         SELECT id, ?, ?, 'active', now() FROM new_users
         RETURNING id
       )
       INSERT INTO membership_roles (membership_id, role_key)
       SELECT id, ? FROM new_memberships`,
      [missing, BENCH_ACCOUNT.id, environmentId, INVITE_ROLES[0]!],
    );
  }
  await db.raw('ANALYZE users, memberships, membership_roles, invitations');
  return { before, inserted: missing };
}

interface MemberPageBody {
  data: unknown[];
  nextCursor: string | null;
}

/**
 * Walks the list with the largest page size and returns the cursor that starts the deepest full page
 * of `WALK_PAGE_SIZE` members, with the number of members before it. Undefined when the list has no second page.
 */
async function findDeepCursor(context: BenchContext, listUrl: string, total: number): Promise<{ cursor: string; offset: number } | undefined> {
  const headers = { authorization: `Bearer ${context.stack.adminKey}` };
  const maxPages = Math.ceil(total / WALK_PAGE_SIZE) + 2;
  let deepest: { cursor: string; offset: number } | undefined;
  let cursor: string | null = null;
  let offset = 0;

  for (let page = 0; page < maxPages && !context.signal.aborted; page += 1) {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const response = await timedFetch(`${listUrl}?limit=${WALK_PAGE_SIZE}${query}`, { headers }, context.signal);
    if (response.status !== 200) {
      throw new Error(`Listing members for the deep cursor failed with HTTP ${response.status}: ${JSON.stringify(response.body)}`);
    }
    const body = response.body as MemberPageBody;
    offset += body.data.length;
    cursor = body.nextCursor;
    if (cursor === null) {
      break;
    }
    if (deepest === undefined || offset + WALK_PAGE_SIZE <= total) {
      deepest = { cursor, offset };
    }
  }
  return deepest;
}

async function measure(context: BenchContext, name: string, url: string, requests: number, offset: number, limit: number): Promise<ListVariantResult> {
  const headers = { authorization: `Bearer ${context.stack.adminKey}` };
  const errors = new ErrorTally();
  const latencies: number[] = [];
  let pageSize: number | undefined;

  for (let request = 0; request < WARMUP_REQUESTS + requests && !context.signal.aborted; request += 1) {
    const response = await timedFetch(url, { headers }, context.signal);
    if (response.status !== 200) {
      errors.add(`HTTP ${response.status}`, response.body);
      continue;
    }
    const data = (response.body as { data?: unknown[] }).data;
    pageSize = Array.isArray(data) ? data.length : pageSize;
    if (request >= WARMUP_REQUESTS) {
      latencies.push(response.durationMs);
    }
  }
  return { name, limit, offset, pageSize, errors, latency: summarize(latencies) };
}

/** Tops the environment up to `members` and times first and deep pages of the member list. */
export async function runListing(context: BenchContext, input: { members: number; requests: number }): Promise<ListRunResult> {
  const { stack } = context;
  const { before, inserted } = await topUpMembers(stack.db, stack.environmentId, input.members);
  const total = before + inserted;
  const listUrl = `${stack.baseUrl}/v1/accounts/${BENCH_ACCOUNT.id}/environments/${BENCH_ACCOUNT.environment}/users`;

  const deep = await findDeepCursor(context, listUrl, total);
  const stopMeasuring = await measureResources(stack.cpuSources);
  const variants: ListVariantResult[] = [];
  for (const limit of PAGE_SIZES) {
    variants.push(await measure(context, `limit=${limit}, first page`, `${listUrl}?limit=${limit}`, input.requests, 0, limit));
    if (deep) {
      const url = `${listUrl}?limit=${limit}&cursor=${encodeURIComponent(deep.cursor)}`;
      variants.push(await measure(context, `limit=${limit}, after ${deep.offset} members`, url, input.requests, deep.offset, limit));
    }
  }
  const healthz = await measure(context, 'GET /healthz', `${stack.baseUrl}/healthz`, input.requests, 0, 0);
  const resources = await stopMeasuring();

  return { members: { existing: before, inserted, total }, variants, healthz, resources };
}
