import { Model } from 'objection';

import { Environment } from './Environment.js';

export class Account extends Model {
  static override tableName = 'accounts';

  id!: string;
  name!: string;
  created_at!: Date;
  environments?: Environment[];

  static override get relationMappings() {
    return {
      environments: {
        relation: Model.HasManyRelation,
        modelClass: Environment,
        join: { from: 'accounts.id', to: 'environments.account_id' },
      },
    };
  }
}
