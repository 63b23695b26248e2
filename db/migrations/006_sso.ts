import type { Knex } from 'knex';

/**
 * Single sign-on: connections per account, the Okta onboarding with its self-service link, the emails
 * that onboarding sends, short-lived sign-in states, and the per-account switch for password login.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('sso_connections', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('account_id').notNullable().references('accounts.id').onDelete('CASCADE');
    table.enu('type', ['okta', 'google'], { useNative: true, enumName: 'sso_connection_type' }).notNullable();
    table
      .enu('status', ['draft', 'testing', 'tested', 'active', 'disabled'], { useNative: true, enumName: 'sso_connection_status' })
      .notNullable()
      .defaultTo('draft');
    table.text('client_id').checkLength('<=', 255);
    // AES-256-GCM output (iv, tag, ciphertext) and the id of the key that made it; see lib/sso/secret-box.ts.
    table.text('client_secret_ciphertext');
    table.text('client_secret_key_id');
    table.text('issuer').checkLength('<=', 2000);
    // Bumped on every credentials submission, so a test started with older credentials cannot pass the new ones.
    table.integer('credentials_version').notNullable().defaultTo(0);
    table.specificType('allowed_domains', 'text[]').notNullable().defaultTo('{}');
    table.text('last_test_error');
    table.timestamp('tested_at', { useTz: true });
    table.timestamp('activated_at', { useTz: true });
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.index(['account_id']);
  });
  await knex.raw(
    'ALTER TABLE sso_connections ADD CONSTRAINT sso_connections_secret_with_key CHECK ((client_secret_ciphertext IS NULL) = (client_secret_key_id IS NULL))',
  );
  // Google sign-in uses the platform's own OAuth client, so an account has at most one Google connection.
  await knex.raw("CREATE UNIQUE INDEX sso_connections_one_google ON sso_connections (account_id) WHERE type = 'google'");

  await knex.schema.createTable('sso_onboardings', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.text('account_id').notNullable().references('accounts.id').onDelete('CASCADE');
    table.uuid('connection_id').notNullable().references('sso_connections.id').onDelete('CASCADE');
    table.text('contact_email').notNullable().checkLength('<=', 254);
    table
      .enu('status', ['pending', 'awaiting_approval', 'completed', 'expired', 'cancelled'], { useNative: true, enumName: 'sso_onboarding_status' })
      .notNullable()
      .defaultTo('pending');
    // SHA-256 of the self-service link's token; null once the customer's part has ended.
    table.text('token_hash').unique();
    table.binary('token_salt').notNullable();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.text('workflow_id').notNullable();
    table.text('workflow_run_id').notNullable().unique();
    table.text('started_by').notNullable();
    table.timestamp('confirmed_at', { useTz: true });
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('ended_at', { useTz: true });
  });
  await knex.raw("CREATE UNIQUE INDEX sso_onboardings_one_open ON sso_onboardings (account_id) WHERE status IN ('pending', 'awaiting_approval')");

  // One row per email an onboarding sends, keyed by workflow run and step, so a retried activity finds
  // what an earlier attempt did.
  await knex.schema.createTable('sso_onboarding_emails', (table) => {
    table.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    table.uuid('onboarding_id').notNullable().references('sso_onboardings.id').onDelete('CASCADE');
    table.text('step').notNullable();
    table.enu('status', ['sending', 'sent'], { useNative: true, enumName: 'sso_onboarding_email_status' }).notNullable();
    table.text('provider_message_id');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('sent_at', { useTz: true });
    table.unique(['onboarding_id', 'step']);
  });

  // The server side of one authorization request: PKCE verifier, nonce, and what the callback must check.
  await knex.schema.createTable('sso_login_states', (table) => {
    table.text('state_hash').primary();
    table.uuid('connection_id').notNullable().references('sso_connections.id').onDelete('CASCADE');
    table.enu('purpose', ['sign_in', 'connection_test'], { useNative: true, enumName: 'sso_login_purpose' }).notNullable();
    table.uuid('onboarding_id').references('sso_onboardings.id').onDelete('CASCADE');
    table.integer('credentials_version').notNullable();
    table.text('email_normalized');
    table.text('nonce').notNullable();
    table.text('code_verifier').notNullable();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.timestamp('used_at', { useTz: true });
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.index(['expires_at']);
  });

  await knex.schema.createTable('account_sso_settings', (table) => {
    table.text('account_id').primary().references('accounts.id').onDelete('CASCADE');
    table.boolean('password_login_enabled').notNullable().defaultTo(true);
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['account_sso_settings', 'sso_login_states', 'sso_onboarding_emails', 'sso_onboardings', 'sso_connections']) {
    await knex.schema.dropTableIfExists(table);
  }
  for (const type of ['sso_login_purpose', 'sso_onboarding_email_status', 'sso_onboarding_status', 'sso_connection_status', 'sso_connection_type']) {
    await knex.raw('DROP TYPE IF EXISTS ??', [type]);
  }
}
