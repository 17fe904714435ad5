import { asc, eq, gt } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { auditEvents, auditHead } from '../db/schema.js';
import { chainHash, GENESIS_HASH } from './chain.js';

/** Where the chain stood when a checkpoint was signed: its newest row, and how many rows it had. */
export interface AuditAnchor {
  seq: number;
  count: number;
  hash: string;
}

export type AuditProblem =
  /** A row does not link to the one before it: a row was deleted or inserted. */
  | 'prev_hash_mismatch'
  /** A row's fields do not give its hash: the row was changed. */
  | 'hash_mismatch'
  /** The newest row's hash is not `audit_head`: rows were removed from the end, or the head was changed. */
  | 'head_mismatch'
  /** The chain has no row at the checkpoint's seq: rows were removed back to or past it. */
  | 'checkpoint_missing'
  /** The row at the checkpoint's seq has another hash, or another number of rows before it. */
  | 'checkpoint_mismatch';

export type AuditVerification =
  /** `seq`: the newest row's (0 for an empty chain); `head`: its hash, which `audit_head` holds too. */
  | { ok: true; checked: number; seq: number; head: string }
  | { ok: false; checked: number; seq: number; problem: AuditProblem };

export interface VerifyOptions {
  pageSize?: number;
  /** A checkpoint's anchor, already checked for its signature: the chain must still hold it. */
  checkpoint?: AuditAnchor;
}

/**
 * Walks the chain in order and reports the first row whose link or hash does
 * not hold; then checks that the newest row is the head `audit_head` records
 * (appends move both in one statement), and, with a checkpoint, that the row
 * it names is still there with its hash, the chain continuing from it.
 *
 * Everything is read in one repeatable-read snapshot, so appends committed
 * while it walks neither hide nor fake a removal. Proved by
 * test/audit/audit.test.ts and test/audit/checkpoint.test.ts.
 */
export async function verifyAuditChain(db: Db, options: VerifyOptions = {}): Promise<AuditVerification> {
  return db.transaction((tx) => walk(tx, options), { isolationLevel: 'repeatable read', accessMode: 'read only' });
}

async function walk(tx: Db, { pageSize = 5000, checkpoint }: VerifyOptions): Promise<AuditVerification> {
  let prevHash = GENESIS_HASH;
  let afterSeq = 0;
  let checked = 0;
  // An empty chain is where every chain starts: a checkpoint of it holds for any chain.
  let anchored = checkpoint === undefined || (checkpoint.seq === 0 && checkpoint.count === 0 && checkpoint.hash === GENESIS_HASH);
  for (;;) {
    const page = await tx.select().from(auditEvents).where(gt(auditEvents.seq, afterSeq)).orderBy(asc(auditEvents.seq)).limit(pageSize);
    for (const row of page) {
      if (row.prevHash !== prevHash) return { ok: false, checked, seq: row.seq, problem: 'prev_hash_mismatch' };
      if (chainHash(prevHash, row) !== row.hash) return { ok: false, checked, seq: row.seq, problem: 'hash_mismatch' };
      prevHash = row.hash;
      afterSeq = row.seq;
      checked++;
      if (anchored) continue;
      if (row.seq > checkpoint!.seq) return { ok: false, checked, seq: checkpoint!.seq, problem: 'checkpoint_missing' };
      if (row.seq === checkpoint!.seq) {
        if (row.hash !== checkpoint!.hash || checked !== checkpoint!.count) return { ok: false, checked, seq: row.seq, problem: 'checkpoint_mismatch' };
        anchored = true;
      }
    }
    if (page.length < pageSize) break;
  }
  if (!anchored) return { ok: false, checked, seq: checkpoint!.seq, problem: 'checkpoint_missing' };
  const [head] = await tx.select({ hash: auditHead.hash }).from(auditHead).where(eq(auditHead.id, 1));
  if (head?.hash !== prevHash) return { ok: false, checked, seq: afterSeq, problem: 'head_mismatch' };
  return { ok: true, checked, seq: afterSeq, head: prevHash };
}

/** One line for an operator: what broke, where, and what it means. */
export function describeVerification(result: AuditVerification, checkpoint?: AuditAnchor): string {
  const at = checkpoint ? `, from the checkpoint at seq ${checkpoint.seq}` : '';
  if (result.ok) return `audit chain intact: ${result.checked} events, head at seq ${result.seq}${at}`;
  const before = `${result.checked} events before it verified`;
  switch (result.problem) {
    case 'head_mismatch':
      return `audit chain BROKEN: the newest event (seq ${result.seq}) does not hold the head recorded in audit_head (head_mismatch): events were removed from the end of the chain, or audit_head was changed`;
    case 'checkpoint_missing':
      return `audit chain BROKEN: the checkpoint's event at seq ${result.seq} is gone (checkpoint_missing): events were removed back to or past the checkpoint; ${result.checked} events verified`;
    case 'checkpoint_mismatch':
      return `audit chain BROKEN at seq ${result.seq} (checkpoint_mismatch): the event there is not the one the checkpoint signed; ${before}`;
    default:
      return `audit chain BROKEN at seq ${result.seq} (${result.problem}); ${before}`;
  }
}
