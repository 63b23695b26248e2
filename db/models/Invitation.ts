import { Model } from 'objection';

export type InvitationStatus = 'pending' | 'accepted' | 'expired' | 'revoked';

export class Invitation extends Model {
  static override tableName = 'invitations';

  id!: string;
  membership_id!: string;
  environment_id!: string;
  email_normalized!: string;
  status!: InvitationStatus;
  token_hash!: string | null;
  expires_at!: Date;
  resend_count!: number;
  last_sent_at!: Date | null;
  reminder_sent_at!: Date | null;
  workflow_id!: string;
  workflow_run_id!: string;
  invited_by_user_id!: string | null;
  created_at!: Date;
  ended_at!: Date | null;

  /** Never serialize the token hash. */
  override $formatJson(json: Record<string, unknown>) {
    const { token_hash: _tokenHash, ...rest } = super.$formatJson(json);
    return rest;
  }
}
