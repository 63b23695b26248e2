import { Model } from 'objection';

export class Environment extends Model {
  static override tableName = 'environments';

  id!: string;
  account_id!: string;
  name!: string;
  created_at!: Date;
}
