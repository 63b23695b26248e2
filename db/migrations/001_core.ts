import type { Knex } from 'knex';

import { ROLE_CATALOG } from '../roles.js';

const SLUG_CHECK = "~ '^[a-z0-9][a-z0-9-]{0,62}$'";

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('accounts', (table) => {
    table.text('id').primary();
    table.text('name').notNullable();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`ALTER TABLE accounts ADD CONSTRAINT accounts_id_slug CHECK (id ${SLUG_CHECK})`);

  await knex.schema.createTable('environments', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('account_id').notNullable().references('accounts.id').onDelete('CASCADE');
    table.text('name').notNullable();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.unique(['account_id', 'name']);
  });
  await knex.raw(`ALTER TABLE environments ADD CONSTRAINT environments_name_slug CHECK (name ${SLUG_CHECK})`);

  await knex.schema.createTable('users', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('email').notNullable().checkLength('<=', 254);
    table.text('password_hash');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  // The address is stored as typed; uniqueness and look-ups use the trimmed, lower-cased form.
  await knex.raw('ALTER TABLE users ADD COLUMN email_normalized text GENERATED ALWAYS AS (lower(btrim(email))) STORED');
  await knex.raw('CREATE UNIQUE INDEX users_email_normalized_unique ON users (email_normalized)');

  await knex.schema.createTable('roles', (table) => {
    table.text('key').primary();
    table.text('name').notNullable();
    table.text('description').notNullable();
    table.text('resource');
  });
  await knex('roles').insert(ROLE_CATALOG.map((role) => ({ ...role })));

  await knex.schema.createTable('memberships', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.text('account_id').notNullable().references('accounts.id').onDelete('CASCADE');
    table.uuid('environment_id').notNullable().references('environments.id').onDelete('CASCADE');
    table
      .enu('status', ['invited', 'active', 'deactivated', 'expired', 'revoked'], {
        useNative: true,
        enumName: 'membership_status',
      })
      .notNullable();
    table.uuid('invited_by_user_id').references('users.id').onDelete('SET NULL');
    table.timestamp('invited_at', { useTz: true });
    table.timestamp('activated_at', { useTz: true });
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.unique(['user_id', 'environment_id']);
    table.index(['environment_id', 'status']);
  });

  await knex.schema.createTable('membership_roles', (table) => {
    table.uuid('membership_id').notNullable().references('memberships.id').onDelete('CASCADE');
    table.text('role_key').notNullable().references('roles.key');
    table.primary(['membership_id', 'role_key']);
  });

  await knex.schema.createTable('invitations', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('membership_id').notNullable().references('memberships.id').onDelete('CASCADE');
    table.uuid('environment_id').notNullable().references('environments.id').onDelete('CASCADE');
    table.text('email_normalized').notNullable();
    table
      .enu('status', ['pending', 'accepted', 'expired', 'revoked'], { useNative: true, enumName: 'invitation_status' })
      .notNullable()
      .defaultTo('pending');
    // SHA-256 of the link's token; null once the invitation has ended, so no old link can match.
    table.text('token_hash').unique();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.integer('resend_count').notNullable().defaultTo(0);
    table.timestamp('last_sent_at', { useTz: true });
    table.timestamp('reminder_sent_at', { useTz: true });
    table.text('workflow_id').notNullable();
    table.text('workflow_run_id').notNullable().unique();
    table.uuid('invited_by_user_id').references('users.id').onDelete('SET NULL');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('ended_at', { useTz: true });
    table.index(['membership_id']);
  });
  await knex.raw(
    "CREATE UNIQUE INDEX invitations_one_pending ON invitations (environment_id, email_normalized) WHERE status = 'pending'",
  );
  await knex.raw(
    "ALTER TABLE invitations ADD CONSTRAINT invitations_token_only_while_pending CHECK (status = 'pending' OR token_hash IS NULL)",
  );

  // One row per email an invitation workflow sends, keyed by the workflow's step, so a retried
  // activity finds what an earlier attempt did.
  await knex.schema.createTable('invitation_emails', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('invitation_id').notNullable().references('invitations.id').onDelete('CASCADE');
    table.text('step').notNullable();
    table.enu('kind', ['invitation', 'reminder', 'resend'], { useNative: true, enumName: 'invitation_email_kind' }).notNullable();
    table.binary('token_salt').notNullable();
    table.enu('status', ['sending', 'sent'], { useNative: true, enumName: 'invitation_email_status' }).notNullable();
    table.text('provider_message_id');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('sent_at', { useTz: true });
    table.unique(['invitation_id', 'step']);
  });

  await knex.schema.createTable('api_keys', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.text('account_id').notNullable().references('accounts.id').onDelete('CASCADE');
    table.uuid('environment_id').notNullable().references('environments.id').onDelete('CASCADE');
    table.text('name').notNullable();
    table.text('prefix').notNullable().unique();
    table.text('secret_hash').notNullable().unique();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('last_used_at', { useTz: true });
    table.timestamp('revoked_at', { useTz: true });
  });

  await knex.schema.createTable('audit_events', (table) => {
    table.bigIncrements('id').primary();
    table.timestamp('occurred_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.text('actor_type').notNullable();
    table.uuid('actor_user_id').references('users.id').onDelete('SET NULL');
    table.text('action').notNullable();
    table.uuid('target_user_id').references('users.id').onDelete('SET NULL');
    table.text('account_id').references('accounts.id').onDelete('CASCADE');
    table.uuid('environment_id').references('environments.id').onDelete('CASCADE');
    table.text('workflow_id');
    table.jsonb('details').notNullable().defaultTo('{}');
    // Makes an audit write from a retried activity a no-op instead of a second event.
    table.text('event_key').unique();
    table.index(['environment_id', 'occurred_at']);
  });

  await knex.schema.createTable('idempotency_keys', (table) => {
    // The caller the key belongs to, such as `api-key:<id>` or `user:<id>`.
    table.text('owner').notNullable();
    table.text('key').notNullable();
    table.text('request_fingerprint').notNullable();
    table.integer('status_code');
    table.jsonb('response_body');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('completed_at', { useTz: true });
    table.primary(['owner', 'key']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of [
    'idempotency_keys',
    'audit_events',
    'api_keys',
    'invitation_emails',
    'invitations',
    'membership_roles',
    'memberships',
    'roles',
    'users',
    'environments',
    'accounts',
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
  for (const type of ['invitation_email_status', 'invitation_email_kind', 'invitation_status', 'membership_status']) {
    await knex.raw('DROP TYPE IF EXISTS ??', [type]);
  }
}
