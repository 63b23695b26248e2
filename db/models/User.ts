import { Model } from 'objection';

import { normalizeEmail } from '../../lib/email-address.js';

export class User extends Model {
  static override tableName = 'users';

  id!: string;
  email!: string;
  email_normalized!: string;
  password_hash!: string | null;
  created_at!: Date;
  updated_at!: Date;

  static findByEmail(email: string) {
    return this.query().findOne({ email_normalized: normalizeEmail(email) });
  }

  /** Never serialize the password hash, whatever the caller selects. */
  override $formatJson(json: Record<string, unknown>) {
    const { password_hash: _passwordHash, ...rest } = super.$formatJson(json);
    return rest;
  }
}
