import type { Knex } from 'knex';

/**
 * Email changes and password resets: a `superseded` status for an email change replaced by a newer
 * request, one sent-time per email an email change sends (the confirmation to the new address and the
 * notice to the old one) so that a retried activity does not mail twice, and the rule that only a
 * pending row may hold a token hash.
 */
export async function up(knex: Knex): Promise<void> {
  // Postgres accepts ADD VALUE inside the migration transaction as long as nothing in that transaction uses the value.
  await knex.raw("ALTER TYPE email_change_status ADD VALUE IF NOT EXISTS 'superseded'");

  await knex.schema.alterTable('email_changes', (table) => {
    table.timestamp('confirmation_sent_at', { useTz: true });
    table.timestamp('notice_sent_at', { useTz: true });
    table.index(['user_id']);
  });
  await knex.raw(
    "ALTER TABLE email_changes ADD CONSTRAINT email_changes_token_only_while_pending CHECK (status = 'pending' OR token_hash IS NULL)",
  );
  await knex.raw(
    "ALTER TABLE password_resets ADD CONSTRAINT password_resets_token_only_while_pending CHECK (status = 'pending' OR token_hash IS NULL)",
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE password_resets DROP CONSTRAINT IF EXISTS password_resets_token_only_while_pending');
  await knex.raw('ALTER TABLE email_changes DROP CONSTRAINT IF EXISTS email_changes_token_only_while_pending');
  await knex.schema.alterTable('email_changes', (table) => {
    table.dropIndex(['user_id']);
    table.dropColumn('notice_sent_at');
    table.dropColumn('confirmation_sent_at');
  });
  // NOTE: Postgres cannot remove a value from an enum type, so `superseded` stays in email_change_status
  // after a rollback; rows that used it become `cancelled`, the nearest earlier status.
  await knex('email_changes').where({ status: 'superseded' }).update({ status: 'cancelled' });
}
