import type { Knex } from 'knex';

/**
 * Notice emails of role changes, deactivation and reactivation. One row per notice, keyed by the
 * workflow run and step that sends it, so a retried activity finds what an earlier attempt did instead
 * of mailing the person twice.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('member_notice_emails', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('notice_key').notNullable().unique();
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.text('kind').notNullable();
    table.enu('status', ['sending', 'sent'], { useNative: true, enumName: 'member_notice_email_status' }).notNullable();
    table.text('provider_message_id');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('sent_at', { useTz: true });
  });
  await knex.raw(
    "ALTER TABLE member_notice_emails ADD CONSTRAINT member_notice_emails_kind CHECK (kind IN ('roles_changed', 'deactivated', 'reactivated', 'operator_deactivated'))",
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('member_notice_emails');
  await knex.raw('DROP TYPE IF EXISTS ??', ['member_notice_email_status']);
}
