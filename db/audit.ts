import type { Knex } from 'knex';

export interface AuditEventInput {
  actorType: 'user' | 'system' | 'invitee' | 'operator';
  actorUserId: string | null;
  action: string;
  targetUserId: string | null;
  accountId: string | null;
  environmentId: string | null;
  workflowId: string | null;
  /** Facts about the change. Never a token, password or secret. */
  details?: Record<string, unknown>;
  /** A key unique to this change, so that a retried write adds no second event. */
  eventKey: string;
}

export async function recordAuditEvent(trx: Knex | Knex.Transaction, event: AuditEventInput): Promise<void> {
  await trx('audit_events')
    .insert({
      actor_type: event.actorType,
      actor_user_id: event.actorUserId,
      action: event.action,
      target_user_id: event.targetUserId,
      account_id: event.accountId,
      environment_id: event.environmentId,
      workflow_id: event.workflowId,
      details: JSON.stringify(event.details ?? {}),
      event_key: event.eventKey,
    })
    .onConflict('event_key')
    .ignore();
}
