/**
 * The custom search attributes that every lifecycle workflow carries, so operators can filter in the
 * Temporal Web UI, for example `LifecycleAccountId = "demo" AND LifecycleKind = "invitation" AND
 * ExecutionStatus = "Running"` for one account's pending invitations.
 *
 * Workflow code imports this module too, so it must import nothing but `@temporalio/common`.
 * A Temporal Service rejects a workflow start that uses an attribute it does not know: the dev server
 * registers them with `--search-attribute` (see `searchAttributeFlags`), and a production namespace
 * needs `npm run admin -- register-search-attributes` or the docker-compose setup service.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';

export const accountIdAttribute = defineSearchAttributeKey('LifecycleAccountId', SearchAttributeType.KEYWORD);
export const environmentAttribute = defineSearchAttributeKey('LifecycleEnvironment', SearchAttributeType.KEYWORD);
export const kindAttribute = defineSearchAttributeKey('LifecycleKind', SearchAttributeType.KEYWORD);
/** The membership status the workflow last set: invited, active, deactivated, expired or revoked. */
export const memberStatusAttribute = defineSearchAttributeKey('LifecycleMemberStatus', SearchAttributeType.KEYWORD);

export const LIFECYCLE_SEARCH_ATTRIBUTES = [accountIdAttribute, environmentAttribute, kindAttribute, memberStatusAttribute] as const;

export type LifecycleKind =
  | 'invitation'
  | 'invitation-group'
  | 'bulk-onboarding'
  | 'role-change'
  | 'deactivation'
  | 'reactivation'
  | 'operator-deactivation'
  | 'email-change'
  | 'password-reset'
  | 'sso-onboarding';

export type MemberStatus = 'invited' | 'active' | 'deactivated' | 'expired' | 'revoked';

export interface LifecycleSearchAttributes {
  kind: LifecycleKind;
  accountId?: string;
  environment?: string;
  memberStatus?: MemberStatus;
}

/** Builds the `typedSearchAttributes` start option of a lifecycle workflow. */
export function lifecycleSearchAttributes(values: LifecycleSearchAttributes): SearchAttributePair[] {
  const pairs: SearchAttributePair[] = [{ key: kindAttribute, value: values.kind }];
  if (values.accountId !== undefined) {
    pairs.push({ key: accountIdAttribute, value: values.accountId });
  }
  if (values.environment !== undefined) {
    pairs.push({ key: environmentAttribute, value: values.environment });
  }
  if (values.memberStatus !== undefined) {
    pairs.push({ key: memberStatusAttribute, value: values.memberStatus });
  }
  return pairs;
}

/** Returns the `temporal server start-dev` arguments that register every lifecycle search attribute. */
export function searchAttributeFlags(): string[] {
  return LIFECYCLE_SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]);
}
