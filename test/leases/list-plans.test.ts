// The Leases page and GET /v1/leases stay fast at a million leases only while each filter has an index that
// yields its leases newest first (BENCHMARKS.md, scenario 9). The planner's choice depends on the table, so this
// checks what survives any table: with sequential scans and sorts priced out, each query the lease service sends
// must still find a plan that reads an index range of its filter in id order. Drop or reorder one of those indexes
// and its query here falls back to walking the primary key (or a sort), and fails. PostgreSQL only: the planner's.
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedLeases } from '../../bench/lease-seed.js';
import type { Db } from '../../src/db/client.js';
import { leases, schema, tasks, type LeaseStatus } from '../../src/db/schema.js';
import { newId } from '../../src/ids.js';
import { createLeaseService, type LeaseFilter } from '../../src/leases/service.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Plans?: PlanNode[];
}
const nodesOf = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodesOf)];

/** Rows the seed has none like: a rare value of every filter, so that each filter's own index is the cheap plan. */
const RARE = { task: 'task-rare', subject: 'rare-subject', role: 'rare-role', backend: 'rare-backend', agent: 'rare-agent' } as const;

describe('the lease listing queries on PostgreSQL', () => {
  let database!: TestDatabase;
  let client!: ReturnType<typeof postgres>;
  let captured: { query: string; params: unknown[] }[] = [];
  let service!: ReturnType<typeof createLeaseService>;
  const rareIds: string[] = [];

  beforeAll(async () => {
    database = await openTestDatabase('postgres');
    client = postgres(database.url!, { max: 1, onnotice: () => {}, fetch_types: false });
    await seedLeases(client, 20_000);
    const now = new Date();
    await database.db.insert(tasks).values({ id: RARE.task, agentSubject: RARE.subject, roles: [], status: 'open', createdBy: 'test', createdAt: now, deadline: new Date(now.getTime() + 3600_000) });
    for (const status of ['revoke_failed', 'active', 'active'] as LeaseStatus[]) {
      const id = newId({ now: () => new Date() });
      rareIds.unshift(id);
      await database.db.insert(leases).values({
        id, taskId: RARE.task, role: RARE.role, backend: RARE.backend, issuer: 'k8s-prod', subject: RARE.subject, agent: RARE.agent,
        tokenSha256: 'h', status, credentialRef: `ref-${id}`, issuedAt: now, expiresAt: now, backendExpiresAt: now,
      });
    }
    await client`analyze leases`;
    const db = drizzle(client, { schema, logger: { logQuery: (query, params) => captured.push({ query, params }) } }) as unknown as Db;
    service = createLeaseService({ db, clock: { now: () => new Date() }, onRevokeRequested: () => {} });
  }, 60_000);
  afterAll(async () => {
    await client?.end();
    await database?.drop();
  });

  /** Runs `call` through the lease service, then plans the one statement it sent with seq scans (and sorts) priced out. */
  async function planOf<T>(call: () => Promise<T>, sorts = false): Promise<{ result: T; scans: PlanNode[]; nodes: PlanNode[] }> {
    captured = [];
    const result = await call();
    expect(captured).toHaveLength(1);
    const { query, params } = captured[0]!;
    const [row] = await client.begin(async (tx) => {
      await tx`set local enable_seqscan = off`;
      if (!sorts) await tx`set local enable_sort = off`;
      return tx.unsafe(`explain (format json) ${query}`, params as never[]);
    });
    const nodes = nodesOf((row!['QUERY PLAN'] as { Plan: PlanNode }[])[0]!.Plan);
    return { result, nodes, scans: nodes.filter((n) => n['Relation Name'] === 'leases' || n['Node Type'] === 'Bitmap Index Scan') };
  }

  const FILTERS: [string, LeaseFilter, string][] = [
    ['task', { task: RARE.task }, 'task_id'],
    ['subject', { subject: RARE.subject }, 'subject'],
    ['role', { role: RARE.role }, 'role'],
    ['backend', { backend: RARE.backend }, 'backend'],
    ['agent', { agent: RARE.agent }, 'agent'],
  ];

  it('pages through every lease by the primary key, newest first, from the first page and from a cursor', async () => {
    for (const cursor of [undefined, rareIds[1]]) {
      const { result, scans, nodes } = await planOf(() => service.list({}, cursor, 50));
      expect(scans.map((n) => [n['Node Type'], n['Index Name']])).toEqual([['Index Scan', 'leases_pkey']]);
      expect(nodes.some((n) => n['Node Type'] === 'Sort')).toBe(false);
      expect(result.items).toHaveLength(50);
    }
  });

  it.each(FILTERS.filter(([name]) => name !== 'task'))('reads the %s filter from its own index in id order, without a sort, also past a cursor', async (_name, filter, column) => {
    for (const cursor of [undefined, rareIds[0]]) {
      const { result, scans, nodes } = await planOf(() => service.list(filter, cursor, 50));
      expect(scans).toHaveLength(1);
      expect(scans[0]!['Node Type']).toBe('Index Scan');
      expect(scans[0]!['Index Cond']).toContain(`(${column} = `);
      expect(nodes.some((n) => n['Node Type'] === 'Sort')).toBe(false);
      expect(result.items.map((l) => l.id)).toEqual(cursor ? rareIds.slice(1) : rareIds);
    }
  });

  it("reads one task's leases from the task index (a task holds few: they are sorted)", async () => {
    const { result, scans } = await planOf(() => service.list({ task: RARE.task }, undefined, 50), true);
    expect(scans.length).toBeGreaterThan(0);
    expect(scans.every((n) => n['Index Cond']?.includes('(task_id = '))).toBe(true);
    expect(result.items.map((l) => l.id)).toEqual(rareIds);
  });

  it('reads each status from the status index in id order: the revoke_failed list every page view shows, too', async () => {
    // The rare ones: revoked and expired are most of the table, where walking the primary key is as good.
    for (const status of ['active', 'revoking', 'revoke_failed'] as LeaseStatus[]) {
      const { scans, nodes } = await planOf(() => service.list({ status }, undefined, status === 'revoke_failed' ? 100 : 50));
      expect(scans.map((n) => [n['Index Name'], n['Index Cond']?.includes('(status = ')])).toEqual([['leases_status_idx', true]]);
      expect(nodes.some((n) => n['Node Type'] === 'Sort')).toBe(false);
    }
  });

  it('serves combined filters and the confirmation’s sample from an index of one of them, in id order', async () => {
    const combined: LeaseFilter[] = [
      { status: 'active', subject: RARE.subject },
      { role: RARE.role, backend: RARE.backend },
      { subject: RARE.subject, role: RARE.role, agent: RARE.agent },
    ];
    for (const filter of combined) {
      const { result, scans, nodes } = await planOf(() => service.list(filter, undefined, 20));
      expect(scans).toHaveLength(1);
      expect(scans[0]!['Index Cond']).toMatch(/\((status|subject|role|backend|agent) = /);
      expect(nodes.some((n) => n['Node Type'] === 'Sort')).toBe(false);
      expect(result.items.length).toBeGreaterThan(0);
    }
  });

  it('counts active leases (the bulk confirmation) from an index of the filter or of active leases', async () => {
    for (const [, filter] of FILTERS) {
      const { result, scans } = await planOf(() => service.countActive(filter));
      expect(scans.length).toBeGreaterThan(0);
      for (const scan of scans) expect(scan['Node Type']).not.toBe('Seq Scan');
      expect(scans.some((n) => n['Index Cond'] !== undefined || n['Index Name'] === 'leases_due_active_idx')).toBe(true);
      expect(result).toBe(2);
    }
  });
});
