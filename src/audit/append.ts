import { sql } from 'drizzle-orm';
import { execRows, type Db } from '../db/client.js';
import { auditEvents } from '../db/schema.js';
import { chainHash, GENESIS_HASH, type AuditFields } from './chain.js';

/** Transaction-scoped advisory lock that orders appends to the hash chain. */
const AUDIT_LOCK_KEY = 7_263_115_001;

export type AuditInput = Omit<AuditFields, 'reason' | 'details' | 'requestId' | 'decision'> & {
  decision?: AuditFields['decision'];
  reason?: string | null;
  details?: Record<string, unknown>;
  requestId?: string | null;
};

/**
 * Appends events to the audit chain inside the caller's transaction, so an
 * event commits or rolls back with the state change it records. Call it last
 * in the transaction: the chain lock is held until commit.
 */
export async function appendAudit(tx: Db, events: AuditInput[]): Promise<void> {
  if (events.length === 0) return;
  await tx.execute(sql`select pg_advisory_xact_lock(${AUDIT_LOCK_KEY})`);
  const [last] = await execRows<{ hash: string }>(tx, sql`select hash from audit_events order by seq desc limit 1`);
  let prevHash = last?.hash ?? GENESIS_HASH;
  const rows = events.map((event) => {
    const fields: AuditFields = {
      at: event.at,
      actor: event.actor,
      action: event.action,
      target: event.target,
      decision: event.decision ?? 'info',
      reason: event.reason ?? null,
      details: event.details ?? {},
      requestId: event.requestId ?? null,
    };
    const hash = chainHash(prevHash, fields);
    const row = { ...fields, prevHash, hash };
    prevHash = hash;
    return row;
  });
  await tx.insert(auditEvents).values(rows);
}
