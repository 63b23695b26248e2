import type { Knex } from 'knex';

import * as core from './001_core.js';
import * as memberLifecycle from './002_member_lifecycle.js';
import * as memberChanges from './003_member_changes.js';
import * as accountSettings from './004_account_settings.js';
import * as bulk from './005_bulk.js';
import * as sso from './006_sso.js';
import * as ssoOnboardingStarter from './007_sso_onboarding_starter.js';
import * as emailRejections from './008_email_rejections.js';
import * as membershipEmailSortKey from './009_membership_email_sort_key.js';

/**
 * Migrations listed in code rather than read from a folder, so that the same list runs under tsx,
 * from the compiled build and inside Jest's module loader.
 */
const MIGRATIONS: Record<string, Knex.Migration> = {
  '001_core': core,
  '002_member_lifecycle': memberLifecycle,
  '003_member_changes': memberChanges,
  '004_account_settings': accountSettings,
  '005_bulk': bulk,
  '006_sso': sso,
  '007_sso_onboarding_starter': ssoOnboardingStarter,
  '008_email_rejections': emailRejections,
  '009_membership_email_sort_key': membershipEmailSortKey,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => MIGRATIONS[name]!,
};
