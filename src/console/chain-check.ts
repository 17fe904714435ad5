import { eq } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { auditHead } from '../db/schema.js';
import { describeVerification, verifyAuditChain, type AuditVerification } from '../audit/verify.js';

export interface ChainCheck {
  at: Date;
  result: AuditVerification;
  text: string;
}

/**
 * The audit page's "Verify now": walks the whole chain (src/audit/verify.ts), so it runs only on demand and one
 * at a time per replica; a second request while one runs waits for that one. The last result is kept in memory
 * as a display cache (each replica has its own, a restart forgets it): it is never state the broker decides on.
 */
export function createChainCheck(deps: { db: Db; clock: Clock }) {
  let last: ChainCheck | undefined;
  let running: Promise<ChainCheck> | undefined;
  return {
    last: () => last,
    /** The head `audit_head` records now: one row, cheap to read on every page view. */
    async head(): Promise<string | undefined> {
      const [row] = await deps.db.select({ hash: auditHead.hash }).from(auditHead).where(eq(auditHead.id, 1));
      return row?.hash;
    },
    run(): Promise<ChainCheck> {
      running ??= verifyAuditChain(deps.db)
        .then((result) => (last = { at: deps.clock.now(), result, text: describeVerification(result) }))
        .finally(() => (running = undefined));
      return running;
    },
  };
}
