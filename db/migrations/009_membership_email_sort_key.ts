import type { Knex } from 'knex';

/**
 * Copies the user's normalized email onto each membership, so that the member list can page through
 * one environment's memberships in email order with an index range scan instead of walking the email
 * index of all users. Triggers keep the copy equal to `users.email_normalized`, so no write path in the
 * application has to set it.
 */
export async function up(knex: Knex): Promise<void> {
  // Holds off changes of users until the trigger on users exists, so that no email change can fall
  // between the copy below and the trigger. CREATE TRIGGER takes this lock mode on users anyway.
  await knex.raw('LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE');
  await knex.raw('ALTER TABLE memberships ADD COLUMN email_normalized text');
  await knex.raw(`
    UPDATE memberships SET email_normalized = users.email_normalized
    FROM users WHERE users.id = memberships.user_id
  `);
  await knex.raw('ALTER TABLE memberships ALTER COLUMN email_normalized SET NOT NULL');

  // The list without a status filter uses the first index and the list of one status the second. The
  // second starts with (environment_id, status), so it replaces the index on those two columns.
  await knex.raw('CREATE INDEX memberships_environment_email_index ON memberships (environment_id, email_normalized, id)');
  await knex.raw(
    'CREATE INDEX memberships_environment_status_email_index ON memberships (environment_id, status, email_normalized, id)',
  );
  await knex.raw('DROP INDEX memberships_environment_id_status_index');

  // Every insert, and every update that sets user_id or email_normalized, takes the email from users,
  // so no writer can store another one. FOR KEY SHARE waits for a concurrent change of the user's email
  // to commit and then reads the new email. Without it, an insert racing an email change could keep the
  // old one, because the change's own trigger cannot see the uncommitted membership.
  await knex.raw(`
    CREATE FUNCTION memberships_copy_user_email() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      SELECT users.email_normalized INTO NEW.email_normalized FROM users WHERE users.id = NEW.user_id FOR KEY SHARE;
      RETURN NEW;
    END
    $$
  `);
  await knex.raw(`
    CREATE TRIGGER memberships_copy_user_email
    BEFORE INSERT OR UPDATE OF user_id, email_normalized ON memberships
    FOR EACH ROW EXECUTE FUNCTION memberships_copy_user_email()
  `);

  // users.email_normalized is generated from users.email, so the trigger fires on updates that set
  // email. It is an AFTER trigger because a BEFORE trigger sees no generated values yet.
  await knex.raw(`
    CREATE FUNCTION users_copy_email_to_memberships() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE memberships SET email_normalized = NEW.email_normalized WHERE user_id = NEW.id;
      RETURN NULL;
    END
    $$
  `);
  await knex.raw(`
    CREATE TRIGGER users_copy_email_to_memberships
    AFTER UPDATE OF email ON users
    FOR EACH ROW WHEN (OLD.email_normalized IS DISTINCT FROM NEW.email_normalized)
    EXECUTE FUNCTION users_copy_email_to_memberships()
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TRIGGER users_copy_email_to_memberships ON users');
  await knex.raw('DROP FUNCTION users_copy_email_to_memberships()');
  await knex.raw('DROP TRIGGER memberships_copy_user_email ON memberships');
  await knex.raw('DROP FUNCTION memberships_copy_user_email()');
  await knex.raw('CREATE INDEX memberships_environment_id_status_index ON memberships (environment_id, status)');
  await knex.raw('DROP INDEX memberships_environment_status_email_index');
  await knex.raw('DROP INDEX memberships_environment_email_index');
  await knex.raw('ALTER TABLE memberships DROP COLUMN email_normalized');
}
