import { Model } from 'objection';

import { Invitation } from './Invitation.js';
import { Role } from './Role.js';
import { User } from './User.js';

export const MEMBERSHIP_STATUSES = ['invited', 'active', 'deactivated', 'expired', 'revoked'] as const;
export type MembershipStatus = (typeof MEMBERSHIP_STATUSES)[number];

export class Membership extends Model {
  static override tableName = 'memberships';

  id!: string;
  user_id!: string;
  account_id!: string;
  environment_id!: string;
  status!: MembershipStatus;
  invited_by_user_id!: string | null;
  invited_at!: Date | null;
  activated_at!: Date | null;
  created_at!: Date;
  updated_at!: Date;
  user?: User;
  roles?: Role[];
  invitations?: Invitation[];

  static override get relationMappings() {
    return {
      user: {
        relation: Model.BelongsToOneRelation,
        modelClass: User,
        join: { from: 'memberships.user_id', to: 'users.id' },
      },
      roles: {
        relation: Model.ManyToManyRelation,
        modelClass: Role,
        join: {
          from: 'memberships.id',
          through: { from: 'membership_roles.membership_id', to: 'membership_roles.role_key' },
          to: 'roles.key',
        },
      },
      invitations: {
        relation: Model.HasManyRelation,
        modelClass: Invitation,
        join: { from: 'memberships.id', to: 'invitations.membership_id' },
      },
    };
  }
}
