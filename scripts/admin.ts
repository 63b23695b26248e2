import { parseArgs, type ParseArgsConfig } from 'node:util';

import { Client, Connection } from '@temporalio/client';
import type { Knex } from 'knex';

import { HttpError } from '../api/errors.js';
import { InvitationWorkflows, invitationWorkflowId } from '../api/invitation-workflows.js';
import { createAccount, createApiKey, ensureActiveMember, findEnvironment } from '../db/bootstrap.js';
import { createDatabase, migrateToLatest } from '../db/connection.js';
import { ConfigError, loadConfig } from '../lib/config.js';
import { dataConverter } from '../lib/data-converter.js';
import { emailSchema, normalizeEmail } from '../lib/email-address.js';
import { deriveKey, generateOperatorKey } from '../lib/secrets.js';
import { LIFECYCLE_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { loadDatabaseConfig, redactDatabaseUrl } from './database-config.js';
import { registerSearchAttributes } from './search-attributes.js';

const USAGE = `Usage: npm run admin -- <command> [options]

Sets up accounts and their first administrators in a deployment that has no dev seed.
Every command reads DATABASE_URL. invite-administrator also reads the configuration the API
uses (APP_SECRET, APP_BASE_URL, TEMPORAL_ADDRESS and the rest) and needs a running worker.

Commands:
  migrate
      Apply the pending database migrations.

  create-account --id ID --name NAME --environments sandbox,production
      Create an account and its environments. Existing ones are kept as they are.

  invite-administrator --account ID --environment ENV --email EMAIL
      Invite EMAIL as an administrator of the environment. The invitation workflow emails
      them a link where they choose a password.

  add-administrator --account ID --environment ENV --email EMAIL
      Make EMAIL an active administrator at once, without an invitation or a password.
      They use the API with a key from create-api-key.

  create-api-key --account ID --environment ENV --email EMAIL --name NAME
      Create an API key for an active member of the environment. The key is printed once,
      alone on standard output.

  create-operator-key --name NAME
      Create a platform operator key (lo_...) for the /v1/operator routes, which act on
      every account. The key is printed once, alone on standard output.

  register-search-attributes
      Register the Keyword search attributes that lifecycle workflows set (LifecycleAccountId,
      LifecycleEnvironment, LifecycleKind, LifecycleMemberStatus) in TEMPORAL_NAMESPACE on the
      Temporal Service at TEMPORAL_ADDRESS. Attributes that exist are left alone. Temporal Cloud
      namespaces take them through tcld or the Cloud UI instead.

  help
      Show this text.

Account and environment ids are lowercase slugs: a-z, 0-9 and hyphens, at most 63 characters.
Exit codes: 0 success, 1 failure, 64 invalid arguments, 78 invalid configuration.
`;

const EXIT_FAILURE = 1;
const EXIT_USAGE = 64;
const EXIT_CONFIG = 78;

/** How long invite-administrator waits for the worker to record the invitation. */
const INVITE_TIMEOUT_MS = 30_000;

/** The rule of the database's CHECK constraints on account ids and environment names. */
const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;
const API_KEY_NAME_MAX_LENGTH = 200;

/** Invalid command-line arguments; the message names the flag. */
class UsageError extends Error {}

/** A command that could not do its work; the message gives the reason and the next step. */
class CommandError extends Error {}

type Values = Record<string, string | boolean | undefined>;

function required(values: Values, flag: string): string {
  const value = values[flag];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new UsageError(`--${flag} is required.`);
  }
  return value.trim();
}

function slug(values: Values, flag: string): string {
  const value = required(values, flag);
  if (!SLUG.test(value)) {
    throw new UsageError(`--${flag} must be a lowercase slug (a-z, 0-9 and hyphens, starting with a letter or digit, at most 63 characters), got "${value}".`);
  }
  return value;
}

function email(values: Values): string {
  const value = required(values, 'email');
  const parsed = emailSchema.safeParse(value);
  if (!parsed.success) {
    throw new UsageError(`--email ${parsed.error.issues[0]?.message ?? 'is invalid'}, got "${value}".`);
  }
  return parsed.data;
}

function environmentList(values: Values): string[] {
  const names = required(values, 'environments')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  if (names.length === 0) {
    throw new UsageError('--environments must name at least one environment, such as sandbox,production.');
  }
  for (const name of names) {
    if (!SLUG.test(name)) {
      throw new UsageError(`--environments must list lowercase slugs separated by commas; "${name}" is not one.`);
    }
  }
  return [...new Set(names)];
}

function apiKeyName(values: Values): string {
  const value = required(values, 'name');
  if (value.length > API_KEY_NAME_MAX_LENGTH) {
    throw new UsageError(`--name must be at most ${API_KEY_NAME_MAX_LENGTH} characters, got ${value.length}.`);
  }
  return value;
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Messages for the operator that must stay off standard output, which carries only the key. */
function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function withDatabase<T>(work: (db: Knex) => Promise<T>): Promise<T> {
  const { url, poolMax } = loadDatabaseConfig();
  const db = createDatabase({ url, poolMax });
  try {
    return await work(db);
  } finally {
    await db.destroy();
  }
}

/** Returns the environment's id, or fails naming what is missing. */
async function requireEnvironment(db: Knex, accountId: string, environment: string): Promise<string> {
  const account = await db('accounts').where({ id: accountId }).first('id');
  if (!account) {
    throw new CommandError(`Account "${accountId}" was not found. Create it with create-account.`);
  }
  const found = await findEnvironment(db, accountId, environment);
  if (!found) {
    const names = await db('environments').where({ account_id: accountId }).orderBy('name').pluck('name');
    throw new CommandError(`Environment "${environment}" was not found in account "${accountId}", which has: ${names.join(', ') || 'none'}.`);
  }
  return found.id;
}

async function findMembership(db: Knex, environmentId: string, emailAddress: string) {
  return db('memberships')
    .join('users', 'users.id', 'memberships.user_id')
    .where({ 'memberships.environment_id': environmentId, 'users.email_normalized': normalizeEmail(emailAddress) })
    .first('users.id as userId', 'users.password_hash as passwordHash', 'memberships.status as status');
}

async function migrate(): Promise<void> {
  await withDatabase(async (db) => {
    print(`Migrating ${redactDatabaseUrl(loadDatabaseConfig().url)}`);
    const applied = await migrateToLatest(db);
    print(applied.length > 0 ? `Applied: ${applied.join(', ')}` : 'The schema is up to date; nothing to apply.');
  });
}

async function createAccountCommand(values: Values): Promise<void> {
  const id = slug(values, 'id');
  const name = required(values, 'name');
  const environments = environmentList(values);

  await withDatabase(async (db) => {
    const existing = await db('accounts').where({ id }).first('name');
    await createAccount(db, { id, name, environments });
    const all = await db('environments').where({ account_id: id }).orderBy('name').pluck('name');

    if (!existing) {
      print(`Created account "${id}" (${name}) with environments: ${all.join(', ')}.`);
      return;
    }
    print(`Account "${id}" already existed; its environments are now: ${all.join(', ')}.`);
    if (existing.name !== name) {
      print(`Its name stays "${existing.name}"; this command does not rename accounts.`);
    }
  });
}

async function addAdministrator(values: Values): Promise<void> {
  const accountId = slug(values, 'account');
  const environment = slug(values, 'environment');
  const address = email(values);

  await withDatabase(async (db) => {
    const environmentId = await requireEnvironment(db, accountId, environment);
    const before = await findMembership(db, environmentId, address);
    if (before?.status === 'invited') {
      throw new CommandError(
        `${address} has a pending invitation to ${accountId}/${environment}. Let them accept it, or revoke it through the API first.`,
      );
    }

    await ensureActiveMember(db, { accountId, environmentId, email: address, roles: ['administrator'] });
    const previously = before && before.status !== 'active' ? ` (was ${before.status})` : '';
    print(`${address} is an active administrator of ${accountId}/${environment}${previously}.`);

    const after = await findMembership(db, environmentId, address);
    if (!after?.passwordHash) {
      print('They have no password. Give them an API key:');
      print(`  npm run admin -- create-api-key --account ${accountId} --environment ${environment} --email ${address} --name "<key name>"`);
    }
  });
}

async function createApiKeyCommand(values: Values): Promise<void> {
  const accountId = slug(values, 'account');
  const environment = slug(values, 'environment');
  const address = email(values);
  const name = apiKeyName(values);

  await withDatabase(async (db) => {
    const environmentId = await requireEnvironment(db, accountId, environment);
    const membership = await findMembership(db, environmentId, address);
    if (!membership) {
      throw new CommandError(`${address} is not a member of ${accountId}/${environment}.`);
    }
    if (membership.status !== 'active') {
      throw new CommandError(`${address} is ${membership.status} in ${accountId}/${environment}; only active members get API keys.`);
    }

    const created = await createApiKey(db, { userId: membership.userId, accountId, environmentId, name });
    note(`Created API key ${created.prefix} "${name}" for ${address} in ${accountId}/${environment}.`);
    note('It is shown only this once; store it now.');
    print(created.key);
  });
}

async function createOperatorKeyCommand(values: Values): Promise<void> {
  const name = apiKeyName(values);

  await withDatabase(async (db) => {
    const { key, prefix, secretHash } = generateOperatorKey();
    await db('operator_api_keys').insert({ name, prefix, secret_hash: secretHash });
    note(`Created operator key ${prefix} "${name}". It can deactivate people in every account.`);
    note('It is shown only this once; store it now.');
    print(key);
  });
}

async function inviteAdministrator(values: Values): Promise<void> {
  const accountId = slug(values, 'account');
  const environment = slug(values, 'environment');
  const address = email(values);
  // The workflow id is derived from APP_SECRET, so it must be the API's secret for the API to find the invitation.
  const config = loadConfig();

  await withDatabase(async (db) => {
    const environmentId = await requireEnvironment(db, accountId, environment);
    const connection = await Connection.connect({ address: config.temporal.address, connectTimeout: 10_000 }).catch((error: unknown) => {
      throw new CommandError(
        `Could not connect to Temporal at ${config.temporal.address}: ${(error as Error).message}. Check TEMPORAL_ADDRESS and that the Temporal Service is running.`,
      );
    });
    try {
      const temporal = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverter(config) });
      const idKey = deriveKey(config.appSecret, 'workflow-id');
      const invitations = new InvitationWorkflows(temporal, config, idKey);
      const input = { accountId, environmentId, environment, email: address, roles: ['administrator'], invitedByUserId: null };

      try {
        const { workflowId, state } = await connection.withDeadline(Date.now() + INVITE_TIMEOUT_MS, () => invitations.start(input));
        print(`Invited ${address} as an administrator of ${accountId}/${environment}.`);
        print(`The worker emails the link (EMAIL_PROVIDER=${config.email.provider}); it expires at ${state.expiresAt}.`);
        print(`Workflow: ${workflowId}`);
      } catch (error) {
        if (error instanceof HttpError) {
          throw new CommandError(error.message);
        }
        // The start may have gone through while no worker picked it up, which is worth reporting instead of a bare timeout.
        const workflowId = invitationWorkflowId(idKey, accountId, environment, address);
        const running = await temporal.workflow
          .getHandle(workflowId)
          .describe()
          .then((description) => description.status.name === 'RUNNING')
          .catch(() => false);
        if (running) {
          throw new CommandError(
            `The invitation workflow ${workflowId} started, but no worker recorded the invitation within ${INVITE_TIMEOUT_MS / 1000} s. ` +
              `Start a worker on task queue "${config.temporal.taskQueue}"; it then records the invitation and sends the email.`,
          );
        }
        throw error;
      }
    } finally {
      await connection.close();
    }
  });
}

async function registerSearchAttributesCommand(): Promise<void> {
  const address = process.env.TEMPORAL_ADDRESS ?? 'localhost:7233';
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  const connection = await Connection.connect({ address, connectTimeout: 10_000 }).catch((error: unknown) => {
    throw new CommandError(`Could not connect to Temporal at ${address}: ${(error as Error).message}. Check TEMPORAL_ADDRESS.`);
  });
  try {
    const added = await registerSearchAttributes(connection, namespace);
    const names = LIFECYCLE_SEARCH_ATTRIBUTES.map((key) => key.name);
    print(added.length > 0 ? `Registered ${added.join(', ')} in namespace "${namespace}".` : `All of ${names.join(', ')} were already registered in "${namespace}".`);
  } finally {
    await connection.close();
  }
}

interface Command {
  options: NonNullable<ParseArgsConfig['options']>;
  run: (values: Values) => Promise<void>;
}

const STRING = { type: 'string' } as const;
const MEMBER_OPTIONS = { account: STRING, environment: STRING, email: STRING };

const COMMANDS: Record<string, Command> = {
  migrate: { options: {}, run: migrate },
  'create-account': { options: { id: STRING, name: STRING, environments: STRING }, run: createAccountCommand },
  'invite-administrator': { options: MEMBER_OPTIONS, run: inviteAdministrator },
  'add-administrator': { options: MEMBER_OPTIONS, run: addAdministrator },
  'create-api-key': { options: { ...MEMBER_OPTIONS, name: STRING }, run: createApiKeyCommand },
  'create-operator-key': { options: { name: STRING }, run: createOperatorKeyCommand },
  'register-search-attributes': { options: {}, run: registerSearchAttributesCommand },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(USAGE);
    return EXIT_USAGE;
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    note(`Unknown command "${name}". Commands: ${Object.keys(COMMANDS).join(', ')}, help.`);
    return EXIT_USAGE;
  }

  try {
    const { values } = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    await command.run(values);
    return 0;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (error instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      note(`${name}: ${(error as Error).message}`);
      note('Run `npm run admin -- help` for the options of each command.');
      return EXIT_USAGE;
    }
    if (error instanceof ConfigError) {
      note(error.message);
      return EXIT_CONFIG;
    }
    if (error instanceof CommandError) {
      note(`${name}: ${error.message}`);
      return EXIT_FAILURE;
    }
    note(`${name} failed: ${(error as Error).stack ?? String(error)}`);
    return EXIT_FAILURE;
  }
}

process.exitCode = await main(process.argv.slice(2));
