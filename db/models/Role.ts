import { Model } from 'objection';

export class Role extends Model {
  static override tableName = 'roles';
  static override idColumn = 'key';

  key!: string;
  name!: string;
  description!: string;
  resource!: string | null;
}
