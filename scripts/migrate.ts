import { createDatabase, migrateToLatest } from '../db/connection.js';
import { ConfigError } from '../lib/config.js';
import { loadDatabaseConfig, redactDatabaseUrl } from './database-config.js';

/** `npm run migrate`: applies the pending migrations to DATABASE_URL. It needs no other variable. */
async function main(): Promise<void> {
  let database: ReturnType<typeof loadDatabaseConfig>;
  try {
    database = loadDatabaseConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }

  const db = createDatabase({ url: database.url, poolMax: database.poolMax });
  try {
    process.stdout.write(`Migrating ${redactDatabaseUrl(database.url)}\n`);
    const applied = await migrateToLatest(db);
    process.stdout.write(applied.length > 0 ? `Applied: ${applied.join(', ')}\n` : 'The schema is up to date; nothing to apply.\n');
  } finally {
    await db.destroy();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`Migration failed: ${(error as Error).message ?? String(error)}\n`);
  process.exit(1);
});
