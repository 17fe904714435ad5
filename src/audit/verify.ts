import { asc, gt } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { auditEvents } from '../db/schema.js';
import { chainHash, GENESIS_HASH } from './chain.js';

export type AuditVerification =
  | { ok: true; checked: number }
  | { ok: false; checked: number; seq: number; problem: 'prev_hash_mismatch' | 'hash_mismatch' };

/** Walks the chain in order and reports the first row whose link or hash does not hold. */
export async function verifyAuditChain(db: Db, pageSize = 5000): Promise<AuditVerification> {
  let prevHash = GENESIS_HASH;
  let afterSeq = 0;
  let checked = 0;
  for (;;) {
    const page = await db
      .select()
      .from(auditEvents)
      .where(gt(auditEvents.seq, afterSeq))
      .orderBy(asc(auditEvents.seq))
      .limit(pageSize);
    for (const row of page) {
      if (row.prevHash !== prevHash) return { ok: false, checked, seq: row.seq, problem: 'prev_hash_mismatch' };
      if (chainHash(prevHash, row) !== row.hash) return { ok: false, checked, seq: row.seq, problem: 'hash_mismatch' };
      prevHash = row.hash;
      afterSeq = row.seq;
      checked++;
    }
    if (page.length < pageSize) return { ok: true, checked };
  }
}
