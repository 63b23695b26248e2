import { performance } from 'node:perf_hooks';

import type { Knex } from 'knex';

import { encodeCursor, memberPageQuery, type Cursor } from '../api/members.js';
import { ErrorTally, timedFetch } from './http.js';
import { INVITE_ROLES, type BenchContext } from './invites.js';
import { measureResources, type ResourceUse } from './resources.js';
import { BENCH_ACCOUNT } from './stack.js';
import { summarize, type Summary } from './stats.js';

const WARMUP_REQUESTS = 5;
const PAGE_SIZES = [50, 200];
/** Where in the list each measured page starts, as a share of the members before it. */
const DEPTHS = [
  { name: 'first page', share: 0 },
  { name: 'middle page', share: 0.5 },
  { name: 'last page', share: 1 },
] as const;

export interface PagePlan {
  /** Node types and index names in the plan of the list query, from EXPLAIN (ANALYZE, FORMAT JSON). */
  nodes: string[];
  indexes: string[];
  /**
   * True when the plan reads memberships or users with a sequential scan or sorts rows read from them.
   * A sort of one member's invitations inside the page's look-ups does not count.
   */
  scansOrSorts: boolean;
  executionMs: number;
  /** Shared buffers the query hit or read, a measure of the rows it touched. */
  sharedBuffers: number;
}

export interface PageResult {
  depth: string;
  limit: number;
  /** Members before the page. */
  offset: number;
  /** `GET …/users` over HTTP: the keyset query, loading the page's members, and the response. */
  api: Summary | undefined;
  apiErrors: ErrorTally;
  /** The same keyset query alone, built by `memberPageQuery` and run through the API's pool. */
  sql: Summary | undefined;
  plan: PagePlan;
}

export interface ListTierResult {
  members: number;
  /** Seconds spent inserting the members of this tier and running ANALYZE. */
  insertSeconds: number;
  pages: PageResult[];
  resources: ResourceUse;
}

export interface ListingResult {
  requests: number;
  tiers: ListTierResult[];
}

/**
 * Adds active members with one role in one statement until the listing environment has `target`
 * members, then runs ANALYZE so that the planner has statistics for the new rows.
 */
async function topUpMembers(db: Knex, environmentId: string, target: number): Promise<void> {
  const [row] = await db('memberships').where({ environment_id: environmentId }).count({ count: '*' });
  const before = Number(row?.count ?? 0);
  if (target > before) {
    await db.raw(
      `WITH new_users AS (
         INSERT INTO users (email)
         SELECT 'member-' || lpad(n::text, 7, '0') || '@listing.bench.example' FROM generate_series(?::int, ?::int) AS n
         RETURNING id
       ), new_memberships AS (
         INSERT INTO memberships (user_id, account_id, environment_id, status, activated_at)
         SELECT id, ?, ?, 'active', now() FROM new_users
         RETURNING id
       )
       INSERT INTO membership_roles (membership_id, role_key)
       SELECT id, ? FROM new_memberships`,
      [before + 1, target, BENCH_ACCOUNT.id, environmentId, INVITE_ROLES[0]!],
    );
  }
  await db.raw('ANALYZE users, memberships, membership_roles, invitations');
}

/** Returns the cursor that the API would hand out after `offset` members, or undefined for the first page. */
async function cursorAfter(db: Knex, environmentId: string, offset: number): Promise<Cursor | undefined> {
  if (offset === 0) {
    return undefined;
  }
  const row = await db('memberships')
    .where('memberships.environment_id', environmentId)
    .orderBy([{ column: 'memberships.email_normalized' }, { column: 'memberships.id' }])
    .offset(offset - 1)
    .first('memberships.id', 'memberships.email_normalized');
  return { email: row.email_normalized, membershipId: row.id };
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

function flatten(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(flatten)];
}

const MEMBER_TABLES = ['users', 'memberships'];

function readsMemberTables(node: PlanNode): boolean {
  return flatten(node).some((child) => MEMBER_TABLES.includes(child['Relation Name'] ?? ''));
}

function scansOrSortsMembers(node: PlanNode): boolean {
  const type = node['Node Type'];
  if (type === 'Seq Scan' && MEMBER_TABLES.includes(node['Relation Name'] ?? '')) {
    return true;
  }
  return (type === 'Sort' || type === 'Incremental Sort') && readsMemberTables(node);
}

async function explain(query: Knex.QueryBuilder): Promise<PagePlan> {
  const { sql, bindings } = query.toSQL();
  const result = await query.client.raw(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, bindings);
  const [{ Plan: plan, 'Execution Time': executionMs }] = result.rows[0]['QUERY PLAN'] as [{ Plan: PlanNode; 'Execution Time': number }];
  const nodes = flatten(plan);
  return {
    nodes: nodes.map((node) => (node['Relation Name'] ? `${node['Node Type']} on ${node['Relation Name']}` : node['Node Type'])),
    indexes: [...new Set(nodes.flatMap((node) => (node['Index Name'] ? [node['Index Name']] : [])))],
    scansOrSorts: nodes.some(scansOrSortsMembers),
    executionMs,
    sharedBuffers: (plan['Shared Hit Blocks'] ?? 0) + (plan['Shared Read Blocks'] ?? 0),
  };
}

async function timeApi(context: BenchContext, url: string, requests: number): Promise<{ latency: Summary | undefined; errors: ErrorTally }> {
  const headers = { authorization: `Bearer ${context.stack.listingAdminKey}` };
  const errors = new ErrorTally();
  const latencies: number[] = [];
  for (let request = 0; request < WARMUP_REQUESTS + requests && !context.signal.aborted; request += 1) {
    const response = await timedFetch(url, { headers }, context.signal);
    if (response.status !== 200) {
      errors.add(`HTTP ${response.status}`, response.body);
    } else if (request >= WARMUP_REQUESTS) {
      latencies.push(response.durationMs);
    }
  }
  return { latency: summarize(latencies), errors };
}

async function timeSql(context: BenchContext, build: () => Knex.QueryBuilder, requests: number): Promise<Summary | undefined> {
  const latencies: number[] = [];
  for (let request = 0; request < WARMUP_REQUESTS + requests && !context.signal.aborted; request += 1) {
    const startedAt = performance.now();
    await build();
    if (request >= WARMUP_REQUESTS) {
      latencies.push(performance.now() - startedAt);
    }
  }
  return summarize(latencies);
}

/**
 * For each member count in `tiers`, fills the listing environment up to it and times the first, a
 * middle and the last page of `GET …/users` against the keyset query alone, and records its plan.
 */
export async function runListing(
  context: BenchContext,
  input: { tiers: number[]; requests: number; progress: (message: string) => void },
): Promise<ListingResult> {
  const { stack } = context;
  const environmentId = stack.listingEnvironmentId;
  const listUrl = `${stack.baseUrl}/v1/accounts/${BENCH_ACCOUNT.id}/environments/${BENCH_ACCOUNT.listingEnvironment}/users`;
  const tiers: ListTierResult[] = [];

  for (const target of input.tiers) {
    input.progress(`listing: filling the environment up to ${target} members`);
    const insertStartedAt = performance.now();
    await topUpMembers(stack.db, environmentId, target);
    const insertSeconds = (performance.now() - insertStartedAt) / 1000;
    // The administrator is a member too.
    const [row] = await stack.db('memberships').where({ environment_id: environmentId }).count({ count: '*' });
    const members = Number(row?.count ?? 0);

    input.progress(`listing: ${members} members, ${input.requests} requests per page`);
    const stopMeasuring = await measureResources(stack.cpuSources);
    const pages: PageResult[] = [];
    for (const limit of PAGE_SIZES) {
      for (const depth of DEPTHS) {
        const offset = Math.max(0, Math.round(depth.share * (members - limit)));
        const after = await cursorAfter(stack.db, environmentId, offset);
        const build = () => memberPageQuery(stack.db, environmentId, {}, { limit, after });
        const url = after === undefined ? `${listUrl}?limit=${limit}` : `${listUrl}?limit=${limit}&cursor=${encodeCursor(after)}`;
        const api = await timeApi(context, url, input.requests);
        const sql = await timeSql(context, build, input.requests);
        pages.push({ depth: depth.name, limit, offset, api: api.latency, apiErrors: api.errors, sql, plan: await explain(build()) });
        context.signal.throwIfAborted();
      }
    }
    tiers.push({ members, insertSeconds, pages, resources: await stopMeasuring() });
  }
  return { requests: input.requests, tiers };
}
