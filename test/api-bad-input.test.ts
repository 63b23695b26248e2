import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';

import { invitationStateQuery } from '../workflows/invitation.js';
import { tokenIn } from './support/fake-sendgrid.js';
import { eventually, startHarness, uniqueEmail, type Harness } from './support/harness.js';

let harness: Harness;

beforeAll(async () => {
  harness = await startHarness();
});

afterAll(async () => {
  await harness?.close();
});

/** Every table a request could write to. A rejected request must leave each row count unchanged. */
const WRITTEN_TABLES = [
  'users',
  'memberships',
  'membership_roles',
  'invitations',
  'invitation_emails',
  'audit_events',
  'idempotency_keys',
] as const;

interface Snapshot {
  rows: Record<string, number>;
  workflows: number;
}

async function workflowCount(): Promise<number> {
  const { count } = await harness.temporal.workflow.count(`TaskQueue = '${harness.config.temporal.taskQueue}'`);
  return count;
}

async function snapshot(): Promise<Snapshot> {
  const rows: Record<string, number> = {};
  for (const table of WRITTEN_TABLES) {
    const [row] = await harness.db(table).count({ count: '*' });
    rows[table] = Number(row?.count);
  }
  return { rows, workflows: await workflowCount() };
}

function usersPath(accountId = harness.seed.accountId, environment = 'sandbox'): string {
  return `/v1/accounts/${accountId}/environments/${environment}/users`;
}

/** Builds an address of exactly `length` characters with the local part and each domain label within RFC 5321 limits (64 and 63). */
function emailOfLength(length: number): string {
  const local = 'a'.repeat(64);
  const topLevel = '.com';
  let remaining = length - local.length - 1 - topLevel.length;
  const labels: string[] = [];
  while (remaining > 0) {
    const labelLength = Math.min(63, remaining);
    labels.push('b'.repeat(labelLength));
    remaining -= labelLength + 1;
  }
  const address = `${local}@${labels.join('.')}${topLevel}`;
  if (address.length !== length) {
    throw new Error(`emailOfLength(${length}) built ${address.length} characters instead. Pick another length.`);
  }
  return address;
}

/** A field problem the response must list. `rule` is matched as a substring of the rule text. */
interface ExpectedProblem {
  field: string;
  rule: string;
}

interface BadRequestCase {
  name: string;
  /** Request body as sent on the wire. */
  payload: string;
  contentType?: string;
  accountId?: string;
  environment?: string;
  status: number;
  code: string;
  /** The exact problems in `error.details`, or null when the error carries none. */
  details: ExpectedProblem[] | null;
}

function expectedDetails(details: ExpectedProblem[]) {
  return details.map(({ field, rule }) => ({ field, rule: expect.stringContaining(rule) }));
}

function fieldsOf(details: unknown): unknown {
  return Array.isArray(details) ? details.map((problem: { field?: unknown }) => problem.field) : details;
}

const json = (value: unknown) => JSON.stringify(value);
const roles = ['customer_viewer'];

const inviteCases: BadRequestCase[] = [
  { name: 'malformed JSON', payload: '{"email": "a@example.com", "roles": [', status: 400, code: 'malformed_json', details: null },
  { name: 'body is an array', payload: json([{ email: 'a@example.com', roles }]), status: 400, code: 'validation_failed', details: [{ field: 'body', rule: 'must be an object, not array' }] },
  // body-parser's strict mode rejects top-level JSON values other than objects and arrays as unparsable.
  { name: 'body is a string', payload: json('a@example.com'), status: 400, code: 'malformed_json', details: null },
  { name: 'body is null', payload: 'null', status: 400, code: 'malformed_json', details: null },
  {
    name: 'body is empty object',
    payload: json({}),
    status: 400,
    code: 'validation_failed',
    details: [
      { field: 'body.email', rule: 'is required' },
      { field: 'body.roles', rule: 'is required' },
    ],
  },
  { name: 'email missing', payload: json({ roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'is required' }] },
  { name: 'email is a number', payload: json({ email: 42, roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'must be a string, not number' }] },
  { name: 'email not-an-email', payload: json({ email: 'not-an-email', roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'must be a valid email address' }] },
  { name: 'email without domain', payload: json({ email: 'a@', roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'must be a valid email address' }] },
  { name: 'email with inner space', payload: json({ email: 'a b@example.com', roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'must be a valid email address' }] },
  { name: 'email of 255 characters', payload: json({ email: emailOfLength(255), roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'must be at most 254 characters' }] },
  { name: 'email only spaces', payload: json({ email: '   ', roles }), status: 400, code: 'validation_failed', details: [{ field: 'body.email', rule: 'must be a valid email address' }] },
  { name: 'roles missing', payload: json({ email: 'a@example.com' }), status: 400, code: 'validation_failed', details: [{ field: 'body.roles', rule: 'is required' }] },
  { name: 'roles is a string', payload: json({ email: 'a@example.com', roles: 'customer_viewer' }), status: 400, code: 'validation_failed', details: [{ field: 'body.roles', rule: 'must be an array, not string' }] },
  { name: 'roles empty', payload: json({ email: 'a@example.com', roles: [] }), status: 400, code: 'validation_failed', details: [{ field: 'body.roles', rule: 'must contain at least one role' }] },
  {
    name: 'roles over 50',
    payload: json({ email: 'a@example.com', roles: Array.from({ length: 51 }, (_, index) => `role_${index}`) }),
    status: 400,
    code: 'validation_failed',
    details: [{ field: 'body.roles', rule: 'must contain at most 50 roles' }],
  },
  {
    name: 'role unknown',
    payload: json({ email: 'a@example.com', roles: ['customer_viewer', 'no_such_role'] }),
    status: 400,
    code: 'validation_failed',
    details: [{ field: 'body.roles.1', rule: 'is not a known role: "no_such_role"' }],
  },
  {
    name: 'role duplicated',
    payload: json({ email: 'a@example.com', roles: ['customer_viewer', 'customer_viewer'] }),
    status: 400,
    code: 'validation_failed',
    details: [{ field: 'body.roles', rule: 'must not contain the same role twice' }],
  },
  { name: 'role is a number', payload: json({ email: 'a@example.com', roles: [42] }), status: 400, code: 'validation_failed', details: [{ field: 'body.roles.0', rule: 'must be a string, not number' }] },
  { name: 'role is empty string', payload: json({ email: 'a@example.com', roles: [''] }), status: 400, code: 'validation_failed', details: [{ field: 'body.roles.0', rule: 'must not contain empty role names' }] },
  {
    name: 'unknown extra field',
    payload: json({ email: 'a@example.com', roles, team: 'ops' }),
    status: 400,
    code: 'validation_failed',
    details: [{ field: 'body.team', rule: 'is not a known field' }],
  },
  // The key belongs to another account, so the API returns 403 without revealing whether this one exists.
  { name: 'unknown account', payload: json({ email: 'a@example.com', roles }), accountId: 'no-such-account', status: 403, code: 'forbidden', details: null },
  { name: 'unknown environment', payload: json({ email: 'a@example.com', roles }), environment: 'staging', status: 403, code: 'forbidden', details: null },
  { name: 'text/plain body', payload: json({ email: 'a@example.com', roles }), contentType: 'text/plain', status: 415, code: 'unsupported_media_type', details: null },
  {
    name: 'charset not UTF-8',
    payload: json({ email: 'a@example.com', roles }),
    contentType: 'application/json; charset=latin1',
    status: 415,
    code: 'unsupported_media_type',
    details: null,
  },
  {
    name: 'body over 100 kB',
    payload: json({ email: 'a@example.com', roles, padding: 'x'.repeat(110 * 1024) }),
    status: 413,
    code: 'payload_too_large',
    details: null,
  },
];

const nulRoleCase: BadRequestCase = {
  name: 'role with NUL character',
  payload: json({ email: 'a@example.com', roles: ['customer\u0000viewer'] }),
  status: 400,
  code: 'validation_failed',
  details: null,
};

let idempotencyKeyNumber = 0;

/** Sends a case with a fresh Idempotency-Key, so a stored key would show in the idempotency_keys count. */
function sendInvite(badCase: BadRequestCase) {
  idempotencyKeyNumber += 1;
  return harness.api
    .post(usersPath(badCase.accountId, badCase.environment))
    .set('Authorization', `Bearer ${harness.seed.adminKey}`)
    .set('Idempotency-Key', `bad-input-${idempotencyKeyNumber}-${Date.now()}`)
    .set('Content-Type', badCase.contentType ?? 'application/json')
    .send(badCase.payload);
}

describe('invite with bad input', () => {
  test.each(inviteCases)('invite rejects $name', async (badCase) => {
    const before = await snapshot();

    const response = await sendInvite(badCase);

    expect(response.status).toBe(badCase.status);
    expect(response.body.error.code).toBe(badCase.code);
    expect(typeof response.body.error.message).toBe('string');
    expect(fieldsOf(response.body.error.details)).toEqual(fieldsOf(badCase.details));
    if (badCase.details !== null) {
      expect(response.body.error.details).toEqual(expectedDetails(badCase.details));
    }

    const after = await snapshot();
    expect(after.rows).toEqual(before.rows);
    expect(after.workflows).toBe(before.workflows);
  });


  test('role with NUL writes nothing', async () => {
    const before = await snapshot();

    await sendInvite(nulRoleCase);

    const after = await snapshot();
    expect(after.rows).toEqual(before.rows);
    expect(after.workflows).toBe(before.workflows);
  });

  test('role with NUL is 400', async () => {
    const response = await sendInvite(nulRoleCase);

    expect(response.status).toBe(nulRoleCase.status);
  });

  test('email of 254 characters accepted', async () => {
    const email = emailOfLength(254);
    const response = await harness.api
      .post(usersPath())
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email: `  ${email}  `, roles });

    expect(response.status).toBe(202);
    expect(response.body.email).toBe(email);
  });

  // Proves that the snapshot can see a write, so the unchanged snapshots above mean something.
  test('valid invite changes snapshot', async () => {
    const before = await snapshot();

    const response = await harness.api
      .post(usersPath())
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .set('Idempotency-Key', `valid-${Date.now()}`)
      .send({ email: uniqueEmail('counted'), roles });
    expect(response.status).toBe(202);

    const after = await snapshot();
    for (const table of ['users', 'memberships', 'membership_roles', 'invitations', 'audit_events', 'idempotency_keys']) {
      expect({ table, count: after.rows[table] }).toEqual({ table, count: before.rows[table]! + 1 });
    }
    // Visibility records reach the count a moment after the start.
    const workflows = await eventually(async () => {
      const count = await workflowCount();
      return count === before.workflows + 1 ? count : undefined;
    }, 10_000, 'workflow count to grow by one');
    expect(workflows).toBe(before.workflows + 1);
  });
});

interface PendingInvitation {
  email: string;
  token: string;
  workflowId: string;
}

interface BadAcceptCase {
  name: string;
  /** Builds the request body from the invitation created for this block. */
  body: (invitation: PendingInvitation) => string;
  contentType?: string;
  details: ExpectedProblem[] | null;
  code?: string;
  status?: number;
}

const acceptCases: BadAcceptCase[] = [
  { name: 'malformed JSON', body: () => '{"token": ', details: null, code: 'malformed_json' },
  { name: 'body is an array', body: ({ token }) => json([token]), details: [{ field: 'body', rule: 'must be an object, not array' }] },
  { name: 'token missing', body: () => json({ password: 'a long enough password' }), details: [{ field: 'body.token', rule: 'is required' }] },
  { name: 'token empty', body: () => json({ token: '', password: 'a long enough password' }), details: [{ field: 'body.token', rule: 'is required' }] },
  { name: 'token is a number', body: () => json({ token: 42, password: 'a long enough password' }), details: [{ field: 'body.token', rule: 'must be a string, not number' }] },
  { name: 'password is a number', body: ({ token }) => json({ token, password: 123456789012 }), details: [{ field: 'body.password', rule: 'must be a string, not number' }] },
  { name: 'password missing', body: ({ token }) => json({ token }), details: [{ field: 'body.password', rule: 'is required because this person has no password yet' }] },
  { name: 'password of 11 characters', body: ({ token }) => json({ token, password: 'p'.repeat(11) }), details: [{ field: 'body.password', rule: 'must be at least 12 characters' }] },
  { name: 'password of 129 characters', body: ({ token }) => json({ token, password: 'p'.repeat(129) }), details: [{ field: 'body.password', rule: 'must be at most 128 characters' }] },
  { name: 'password of 1001 characters', body: ({ token }) => json({ token, password: 'p'.repeat(1001) }), details: [{ field: 'body.password', rule: '1000' }] },
  { name: 'password is the email', body: ({ token, email }) => json({ token, password: ` ${email.toUpperCase()} ` }), details: [{ field: 'body.password', rule: 'must not be the email address' }] },
  {
    name: 'unknown extra field',
    body: ({ token }) => json({ token, password: 'a long enough password', remember: true }),
    details: [{ field: 'body.remember', rule: 'is not a known field' }],
  },
  { name: 'text/plain body', body: ({ token }) => json({ token, password: 'a long enough password' }), contentType: 'text/plain', status: 415, code: 'unsupported_media_type', details: null },
];

describe('accept with bad input', () => {
  let invitation: PendingInvitation;

  beforeAll(async () => {
    const email = uniqueEmail('accepter');
    const response = await harness.api
      .post(usersPath())
      .set('Authorization', `Bearer ${harness.seed.adminKey}`)
      .send({ email, roles });
    if (response.status !== 202) {
      throw new Error(`inviting ${email} returned ${response.status}: ${response.text}`);
    }
    await harness.sendgrid.waitFor(() => harness.sendgrid.deliveredTo(email).length === 1);
    const token = tokenIn(harness.sendgrid.deliveredTo(email)[0]!);
    invitation = { email, token, workflowId: response.body.invitation.workflowId };
  });

  function sendAccept(badCase: BadAcceptCase) {
    return harness.api
      .post('/v1/invitations/accept')
      .set('Content-Type', badCase.contentType ?? 'application/json')
      .send(badCase.body(invitation));
  }

  test.each(acceptCases)('accept rejects $name', async (badCase) => {
    const before = await snapshot();

    const response = await sendAccept(badCase);

    expect(response.status).toBe(badCase.status ?? 400);
    expect(response.body.error.code).toBe(badCase.code ?? 'validation_failed');
    expect(fieldsOf(response.body.error.details)).toEqual(fieldsOf(badCase.details));
    if (badCase.details !== null) {
      expect(response.body.error.details).toEqual(expectedDetails(badCase.details));
    }

    const after = await snapshot();
    expect(after.rows).toEqual(before.rows);
    expect(after.workflows).toBe(before.workflows);
  });


  test('page without token is 410', async () => {
    const response = await harness.api.get('/invitations/accept');

    expect(response.status).toBe(410);
    expect(response.headers['content-type']).toContain('text/html');
  });

  test('page with repeated token is 4xx', async () => {
    const response = await harness.api.get('/invitations/accept').query({ token: [invitation.token, invitation.token] });

    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
  });

  test('invitation survives bad attempts', async () => {
    const row = await harness.db('invitations').where({ email_normalized: invitation.email }).first('status', 'token_hash');
    expect(row.status).toBe('pending');
    expect(row.token_hash).not.toBeNull();

    const user = await harness.db('users').where({ email_normalized: invitation.email }).first('password_hash');
    expect(user.password_hash).toBeNull();

    const state = await harness.temporal.workflow.getHandle(invitation.workflowId).query(invitationStateQuery);
    expect(state.phase).toBe('pending');

    const page = await harness.api.get(`/invitations/accept?token=${encodeURIComponent(invitation.token)}`);
    expect(page.status).toBe(200);

    const accepted = await harness.api.post('/v1/invitations/accept').send({ token: invitation.token, password: 'a long enough password' });
    expect(accepted.status).toBe(200);
    expect(accepted.body.status).toBe('active');
    expect(accepted.body.email).toBe(invitation.email);
  });
});
