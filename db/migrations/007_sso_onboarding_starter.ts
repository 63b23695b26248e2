import type { Knex } from 'knex';

/** Records who started an SSO onboarding, so that deactivating that person can stop it. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('sso_onboardings', (table) => {
    table.uuid('started_by_user_id').references('users.id').onDelete('SET NULL');
    table.index(['started_by_user_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('sso_onboardings', (table) => {
    table.dropColumn('started_by_user_id');
  });
}
