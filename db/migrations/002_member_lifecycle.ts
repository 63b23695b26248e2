import type { Knex } from 'knex';

/**
 * Tables for the rest of a member's life after the invitation: sessions, deactivation, operator keys,
 * email changes, password resets and bulk onboarding.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('memberships', (table) => {
    table.timestamp('deactivated_at', { useTz: true });
    table.uuid('deactivated_by_user_id').references('users.id').onDelete('SET NULL');
    // `active` or `invited`: what reactivation returns the membership to.
    table.text('status_before_deactivation');
  });

  await knex.schema.createTable('sessions', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.text('token_hash').notNullable().unique();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('last_used_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Absolute expiry; the idle timeout is counted from last_used_at.
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.timestamp('revoked_at', { useTz: true });
    table.text('revoked_reason');
    table.text('ip');
    table.text('user_agent');
    table.index(['user_id']);
  });

  await knex.schema.createTable('operator_api_keys', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('name').notNullable();
    table.text('prefix').notNullable().unique();
    table.text('secret_hash').notNullable().unique();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('last_used_at', { useTz: true });
    table.timestamp('revoked_at', { useTz: true });
  });

  await knex.schema.createTable('email_changes', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.text('new_email').notNullable().checkLength('<=', 254);
    table.text('old_email').notNullable();
    table
      .enu('status', ['pending', 'confirmed', 'expired', 'cancelled', 'failed'], { useNative: true, enumName: 'email_change_status' })
      .notNullable()
      .defaultTo('pending');
    table.text('token_hash').unique();
    table.binary('token_salt');
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.text('workflow_id').notNullable();
    table.text('workflow_run_id').notNullable().unique();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('ended_at', { useTz: true });
  });
  await knex.raw('ALTER TABLE email_changes ADD COLUMN new_email_normalized text GENERATED ALWAYS AS (lower(btrim(new_email))) STORED');
  await knex.raw("CREATE UNIQUE INDEX email_changes_one_pending ON email_changes (user_id) WHERE status = 'pending'");

  await knex.schema.createTable('password_resets', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table
      .enu('status', ['pending', 'used', 'expired', 'superseded'], { useNative: true, enumName: 'password_reset_status' })
      .notNullable()
      .defaultTo('pending');
    table.text('token_hash').unique();
    table.binary('token_salt');
    table.text('step').notNullable();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.text('workflow_id').notNullable();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('sent_at', { useTz: true });
    table.timestamp('ended_at', { useTz: true });
    table.unique(['workflow_id', 'step']);
  });
  await knex.raw("CREATE UNIQUE INDEX password_resets_one_pending ON password_resets (user_id) WHERE status = 'pending'");

  await knex.schema.createTable('batches', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('account_id').notNullable().references('accounts.id').onDelete('CASCADE');
    table.uuid('environment_id').notNullable().references('environments.id').onDelete('CASCADE');
    table.uuid('created_by_user_id').references('users.id').onDelete('SET NULL');
    table.enu('status', ['running', 'completed'], { useNative: true, enumName: 'batch_status' }).notNullable().defaultTo('running');
    table.integer('total_rows').notNullable();
    table.text('workflow_id').notNullable();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('completed_at', { useTz: true });
  });

  await knex.schema.createTable('batch_rows', (table) => {
    table.uuid('batch_id').notNullable().references('batches.id').onDelete('CASCADE');
    table.integer('row_number').notNullable();
    table.text('email').notNullable();
    table.specificType('roles', 'text[]').notNullable();
    table
      .enu('status', ['queued', 'invited', 'already_member', 'invalid', 'failed'], { useNative: true, enumName: 'batch_row_status' })
      .notNullable()
      .defaultTo('queued');
    table.text('error');
    table.uuid('user_id').references('users.id').onDelete('SET NULL');
    table.uuid('invitation_id').references('invitations.id').onDelete('SET NULL');
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.primary(['batch_id', 'row_number']);
  });

  await knex.schema.alterTable('invitations', (table) => {
    table.uuid('batch_id').references('batches.id').onDelete('SET NULL');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('invitations', (table) => {
    table.dropColumn('batch_id');
  });
  for (const table of ['batch_rows', 'batches', 'password_resets', 'email_changes', 'operator_api_keys', 'sessions']) {
    await knex.schema.dropTableIfExists(table);
  }
  for (const type of ['batch_row_status', 'batch_status', 'password_reset_status', 'email_change_status']) {
    await knex.raw('DROP TYPE IF EXISTS ??', [type]);
  }
  await knex.schema.alterTable('memberships', (table) => {
    table.dropColumn('status_before_deactivation');
    table.dropColumn('deactivated_by_user_id');
    table.dropColumn('deactivated_at');
  });
}
