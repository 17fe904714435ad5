import { getTableColumns } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { leases, type Lease } from '../../src/db/schema.js';
import { AdminLeaseSchema, LeaseSchema } from '../../src/http/schemas.js';
import { adminLeaseView, LEASE_COLUMNS, leaseView, type LeaseColumnDecisions } from '../../src/leases/view.js';
import { LeaseTable } from '../../src/console/pages/leases.js';

// Each column holds a value found nowhere else, so a column leaking into a view shows in its JSON.
const row = (over: Partial<Lease> = {}): Lease => ({
  id: '0190f0e1-0000-7000-8000-000000000001',
  taskId: 'task-1',
  role: 'deploy',
  backend: 'vault-prod',
  issuer: 'https://issuer.example',
  subject: 'agent-7',
  tokenSha256: 'secret-token-sha256',
  status: 'revoke_failed',
  reason: 'task_completed',
  credentialRef: 'vault-lease-id-1',
  issuedAt: new Date('2025-01-01T00:00:00.000Z'),
  expiresAt: new Date('2025-01-01T01:00:00.000Z'),
  backendExpiresAt: new Date('2025-01-01T02:00:00.000Z'),
  revocable: false,
  revokeRequestedAt: new Date('2025-01-01T00:30:00.000Z'),
  endedAt: new Date('2025-01-01T00:31:00.000Z'),
  attempts: 3,
  nextAttemptAt: new Date('2025-01-01T00:40:00.000Z'),
  lastError: 'backend error: vault path secret/db',
  claimedBy: 'sweeper-internal-claimant',
  claimUntil: new Date('2031-03-03T03:03:03.000Z'),
  agent: 'deployer',
  agentOwner: 'team-a',
  onBehalfOf: 'https://people.example/alice',
  ...over,
});
const fresh = row({ status: 'active', reason: null, revokeRequestedAt: null, endedAt: null, attempts: 0, nextAttemptAt: null, lastError: null, claimedBy: null, claimUntil: null, agent: null, agentOwner: null, onBehalfOf: null });

const decided = Object.entries(LEASE_COLUMNS) as [keyof Lease, LeaseColumnDecisions[keyof Lease]][];
const columnsFor = (audience: 'never' | 'holder' | 'admin') =>
  decided.filter(([, d]) => (d === 'never' ? 'never' : d.audience) === audience).map(([column]) => column);

describe('the lease mapping (src/leases/view.ts)', () => {
  it('decides every column of the drizzle table, and only those', () => {
    expect(Object.keys(LEASE_COLUMNS).sort()).toEqual(Object.keys(getTableColumns(leases)).sort());
    expect(columnsFor('never').sort()).toEqual(['claimUntil', 'claimedBy', 'tokenSha256']);
    expect(columnsFor('admin').sort()).toEqual(['attempts', 'lastError', 'nextAttemptAt']);
  });

  it('fails to compile when a column has no decision, or a shown column does not match its schema', () => {
    const { claimUntil: _, ...undecided } = LEASE_COLUMNS;
    // @ts-expect-error claimUntil is a column of the table without a decision
    expect(undecided satisfies LeaseColumnDecisions).toBeDefined();
  });

  for (const [name, lease] of [['a revoked lease', row()], ['a fresh lease (nulls)', fresh]] as const) {
    it(`shows ${name} to its holder and to an admin through the schemas the OpenAPI document declares`, () => {
      const holder = leaseView(lease);
      const admin = adminLeaseView(lease);
      expect(LeaseSchema.strict().parse(holder)).toEqual(holder);
      expect(AdminLeaseSchema.strict().parse(admin)).toEqual(admin);
      // The holder's fields are the admin's first fields, in the same order; the admin's extras stay out of the holder's view.
      expect(Object.keys(admin).slice(0, Object.keys(holder).length)).toEqual(Object.keys(holder));
      expect(admin).toMatchObject(holder);
      expect(Object.keys(admin).filter((k) => !(k in holder))).toEqual(['revoke_attempts', 'next_attempt_at', 'last_error']);
      expect(() => LeaseSchema.strict().parse(admin)).toThrow();
    });
  }

  it('keeps the never columns out of every view, and the admin columns out of the holder view', () => {
    const lease = row();
    const text = (column: keyof Lease) => String(lease[column] instanceof Date ? (lease[column] as Date).toISOString() : lease[column]);
    const holder = leaseView(lease);
    const admin = adminLeaseView(lease);
    for (const view of [holder, admin]) {
      const json = JSON.stringify(view);
      for (const column of columnsFor('never')) expect(json).not.toContain(text(column));
      expect(Object.keys(view).filter((field) => /token|claim|sha/.test(field))).toEqual([]);
    }
    const adminFields = columnsFor('admin').map((column) => (LEASE_COLUMNS[column] as { field: string }).field);
    expect(Object.keys(holder).filter((field) => adminFields.includes(field))).toEqual([]);
    expect(JSON.stringify(holder)).not.toContain(text('lastError'));
    expect(JSON.stringify(holder)).not.toContain(text('nextAttemptAt'));
  });

  it('renders a lease as the API always has: snake_case fields, ISO times, nulls kept', () => {
    expect(JSON.stringify(adminLeaseView(row()))).toBe(
      JSON.stringify({
        id: '0190f0e1-0000-7000-8000-000000000001',
        task: 'task-1',
        role: 'deploy',
        backend: 'vault-prod',
        issuer: 'https://issuer.example',
        subject: 'agent-7',
        status: 'revoke_failed',
        reason: 'task_completed',
        credential_ref: 'vault-lease-id-1',
        issued_at: '2025-01-01T00:00:00.000Z',
        expires_at: '2025-01-01T01:00:00.000Z',
        backend_expires_at: '2025-01-01T02:00:00.000Z',
        revocable: false,
        revoke_requested_at: '2025-01-01T00:30:00.000Z',
        ended_at: '2025-01-01T00:31:00.000Z',
        agent: 'deployer',
        agent_owner: 'team-a',
        on_behalf_of: 'https://people.example/alice',
        revoke_attempts: 3,
        next_attempt_at: '2025-01-01T00:40:00.000Z',
        last_error: 'backend error: vault path secret/db',
      }),
    );
    expect(leaseView(fresh)).toMatchObject({ reason: null, revoke_requested_at: null, ended_at: null, agent: null, agent_owner: null });
    expect(adminLeaseView(fresh)).toMatchObject({ revoke_attempts: 0, next_attempt_at: null, last_error: null });
  });
});

describe("the console's lease table", () => {
  it('shows the person a delegated lease is for, beside its holder', async () => {
    const html = String(await LeaseTable({ leases: [row({ status: 'active' }), fresh], now: new Date('2025-01-01T00:10:00.000Z') }).toString());
    expect(html).toContain('<div class="on-behalf-of">on behalf of https://people.example/alice</div>');
    expect(html.match(/on behalf of/g)).toHaveLength(1);
  });
});
