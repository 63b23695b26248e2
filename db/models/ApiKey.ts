import { Model } from 'objection';

export class ApiKey extends Model {
  static override tableName = 'api_keys';

  id!: string;
  user_id!: string;
  account_id!: string;
  environment_id!: string;
  name!: string;
  prefix!: string;
  secret_hash!: string;
  created_at!: Date;
  last_used_at!: Date | null;
  revoked_at!: Date | null;
}
