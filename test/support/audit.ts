// The audit tests' shared moves: activity that writes a chain, an empty chain
// to start from, and the tampering an attacker with write access can do.
import { asc, gte, sql } from 'drizzle-orm';
import { chainHash, GENESIS_HASH } from '../../src/audit/chain.js';
import type { Db } from '../../src/db/client.js';
import { auditEvents } from '../../src/db/schema.js';
import type { TestBroker } from './broker.js';

/** A task's life (opened, concurrent issuance, a denial, completion, revocation); returns its id. */
export async function auditActivity(t: TestBroker): Promise<string> {
  const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 })).json.task.id as string;
  // Concurrent issuance: the chain must stay one unbroken line.
  await Promise.all(Array.from({ length: 8 }, () => t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'demo' })));
  await t.call('POST', '/v1/credentials', { subject: 'agent-2' }, { task, role: 'demo' });
  await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'success' });
  await t.broker.sweeper.runOnce();
  return task;
}

/** An empty chain, so a test that breaks it on purpose starts from one that holds. */
export async function resetAuditChain(db: Db): Promise<void> {
  await db.execute(sql`delete from audit_events`);
  await db.execute(sql`update audit_head set hash = ${GENESIS_HASH} where id = 1`);
}

/** The seqs of the chain, oldest first. */
export async function auditSeqs(db: Db): Promise<number[]> {
  return (await db.select({ seq: auditEvents.seq }).from(auditEvents).orderBy(asc(auditEvents.seq))).map((r) => r.seq);
}

/** Deletes every row from `seq` on and points audit_head at the row before: the end removed without a trace in the table. */
export async function truncateChainFrom(db: Db, seq: number): Promise<void> {
  await db.execute(sql`delete from audit_events where seq >= ${seq}`);
  await db.execute(sql`update audit_head set hash = coalesce((select hash from audit_events order by seq desc limit 1), ${GENESIS_HASH}) where id = 1`);
}

/** Rehashes every row from `seq` on and moves audit_head: a consistent rewrite by someone who can write both. */
export async function rehashChainFrom(db: Db, seq: number): Promise<void> {
  const rows = await db.select().from(auditEvents).where(gte(auditEvents.seq, seq)).orderBy(asc(auditEvents.seq));
  let prev = rows[0]!.prevHash;
  for (const row of rows) {
    const hash = chainHash(prev, row);
    await db.execute(sql`update audit_events set prev_hash = ${prev}, hash = ${hash} where seq = ${row.seq}`);
    prev = hash;
  }
  await db.execute(sql`update audit_head set hash = ${prev} where id = 1`);
}
