import type { Knex } from 'knex';

/**
 * The combined email of an invitation to several environments. One row per run of the group workflow,
 * so that a retried email activity finds what an earlier attempt did instead of mailing again.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('invitation_group_emails', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('workflow_id').notNullable();
    table.text('workflow_run_id').notNullable().unique();
    table.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    // The invitations whose links the email carries, in the order it lists them.
    table.specificType('invitation_ids', 'uuid[]').notNullable();
    table
      .enu('status', null, { useNative: true, existingType: true, enumName: 'invitation_email_status' })
      .notNullable();
    table.text('provider_message_id');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('sent_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('invitation_group_emails');
}
