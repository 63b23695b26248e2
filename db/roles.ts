/** Resources that have their own viewer, contributor and administrator roles. */
export const ROLE_RESOURCES = ['customer', 'subscription', 'invoice', 'meter', 'pricing_plan', 'billing_entity'] as const;

const RESOURCE_LEVELS = [
  { level: 'viewer', verb: 'View' },
  { level: 'contributor', verb: 'Create and edit' },
  { level: 'administrator', verb: 'Fully manage' },
] as const;

export interface RoleDefinition {
  key: string;
  name: string;
  description: string;
  resource: string | null;
}

function titleCase(snake: string): string {
  return snake
    .split('_')
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join(' ');
}

export const ROLE_CATALOG: readonly RoleDefinition[] = [
  {
    key: 'administrator',
    name: 'Administrator',
    description: 'Full access to the account environment, including its users and administrators.',
    resource: null,
  },
  {
    key: 'user_administrator',
    name: 'User Administrator',
    description: 'Invites, changes and deactivates users, except administrators.',
    resource: null,
  },
  ...ROLE_RESOURCES.flatMap((resource) =>
    RESOURCE_LEVELS.map(({ level, verb }) => ({
      key: `${resource}_${level}`,
      name: `${titleCase(resource)} ${titleCase(level)}`,
      description: `${verb} ${resource.replace('_', ' ')} records.`,
      resource,
    })),
  ),
];

/** Roles that allow managing the users of an account environment. */
export const USER_MANAGER_ROLES = ['administrator', 'user_administrator'] as const;
