import type { Knex } from 'knex';

/**
 * Records an invitation email that the provider rejected for good, with the provider's reason, so that
 * administrators can see why the person got no email.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw("ALTER TYPE invitation_email_status ADD VALUE IF NOT EXISTS 'rejected'");
  await knex.schema.alterTable('invitation_emails', (table) => {
    table.timestamp('rejected_at', { useTz: true });
    table.text('rejection_reason');
  });
}

/**
 * Postgres cannot drop an enum value, and rebuilding the type would mean rebuilding every table that
 * uses it (005_bulk's too), so the unused `rejected` value stays. Rejected rows go back to `sending`.
 */
export async function down(knex: Knex): Promise<void> {
  await knex('invitation_emails').where({ status: 'rejected' }).update({ status: 'sending' });
  await knex.schema.alterTable('invitation_emails', (table) => {
    table.dropColumn('rejected_at');
    table.dropColumn('rejection_reason');
  });
}
