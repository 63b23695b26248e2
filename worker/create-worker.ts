import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import type { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Knex } from 'knex';
import type { Logger } from 'pino';

import { createAccountSettingsActivities } from '../activities/account-settings.js';
import { createBulkActivities } from '../activities/bulk.js';
import type { ActivityDependencies } from '../activities/dependencies.js';
import { createInvitationActivities } from '../activities/invitations.js';
import { createMemberChangeActivities } from '../activities/member-changes.js';
import { createSsoActivities } from '../activities/sso.js';
import type { Config } from '../lib/config.js';
import { dataConverter } from '../lib/data-converter.js';
import type { EmailSender } from '../lib/email/index.js';
import { deriveKey } from '../lib/secrets.js';
import { activityOutcomeInterceptors } from './activity-outcomes.js';

/** The workflow sources: TypeScript when run from the repository, JavaScript from the compiled build. */
export const WORKFLOWS_PATH = ['index.ts', 'index.js']
  .map((file) => fileURLToPath(new URL(`../workflows/${file}`, import.meta.url)))
  .find((path) => existsSync(path))!;

export interface WorkerDependencies {
  config: Config;
  db: Knex;
  email: EmailSender;
  logger: Logger;
  connection: NativeConnection;
  /** A client for activities that start or signal other workflows. */
  temporal: Client;
  /** A prebuilt bundle (production); without it the worker bundles the workflow sources at start-up. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export function createActivities({ config, db, email, temporal }: Pick<WorkerDependencies, 'config' | 'db' | 'email' | 'temporal'>) {
  const shared: ActivityDependencies = { config, db, email, temporal, tokenKey: deriveKey(config.appSecret, 'invitation-token') };
  return {
    ...createInvitationActivities({ db, email, tokenKey: shared.tokenKey, appBaseUrl: config.appBaseUrl }),
    ...createMemberChangeActivities(shared),
    ...createAccountSettingsActivities(shared),
    ...createBulkActivities(shared),
    ...createSsoActivities(shared),
  };
}

export async function createWorker(dependencies: WorkerDependencies): Promise<Worker> {
  const { config, connection, workflowBundle } = dependencies;
  return Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    activities: createActivities(dependencies),
    dataConverter: dataConverter(config),
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    // Activities are short database writes and one HTTP call; the pool size bounds them instead.
    maxConcurrentActivityTaskExecutions: Math.max(4, config.databasePoolMax * 2),
    maxConcurrentLocalActivityExecutions: Math.max(4, config.databasePoolMax * 2),
    // The SDK's default scales with the heap limit: 2,310 workflows for a 4 GiB heap, which held about
    // 1.3 GiB with 10,000 invitations waiting on their timers (BENCHMARKS.md).
    maxCachedWorkflows: config.workerMaxCachedWorkflows,
    interceptors: { activity: [activityOutcomeInterceptors] },
    // On shutdown (SIGTERM), running activities get SHUTDOWN_TIMEOUT to finish. Then they are cancelled,
    // and Temporal retries them on another worker once their attempt fails or times out.
    shutdownGraceTime: config.shutdown.timeoutMs,
  });
}

export async function connectWorker(config: Config): Promise<NativeConnection> {
  return NativeConnection.connect({ address: config.temporal.address });
}
