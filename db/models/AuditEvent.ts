import { Model } from 'objection';

export class AuditEvent extends Model {
  static override tableName = 'audit_events';

  id!: string;
  occurred_at!: Date;
  actor_type!: 'user' | 'system' | 'invitee' | 'operator';
  actor_user_id!: string | null;
  action!: string;
  target_user_id!: string | null;
  account_id!: string | null;
  environment_id!: string | null;
  workflow_id!: string | null;
  details!: Record<string, unknown>;
  event_key!: string | null;
}
