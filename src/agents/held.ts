import { and, asc, eq, gt, isNull, sql } from 'drizzle-orm';
import { requestRef, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { isDeadlock } from '../db/errors.js';
import { agentSuspensions, leases } from '../db/schema.js';
import { anchoredPattern } from '../identity/match.js';
import { markRevoking } from '../leases/revoke.js';

/** An issuer and a subject or subject pattern: what a lease records of its holder. */
export interface HolderRule {
  issuer: string;
  subject?: string;
  subject_pattern?: string;
}

/** Whose active leases a suspension revokes: an agent's (by the `agent` column), and those of identities a rule names. */
export interface Held {
  agent?: string;
  /** Leases issued while their identity matched no agent carry none: they are found by issuer and subject. */
  rule?: HolderRule;
  /** Only leases without an agent, for `rule` (an agent's own are found by name). */
  unattributedOnly?: boolean;
}

const BATCH = 500;

/**
 * Moves the active leases a suspension stops to `revoking`, a batch per
 * transaction, each batch's rows locked in id order (FOR UPDATE) before they
 * move, and the suspension's count moved with them. It runs after the
 * suspension has committed: from then on no credential of the held set can
 * be committed (leases/writer.ts), so every one still active is found here.
 * Batches keep the audit chain's head, which every issuance waits for, held
 * for one batch at a time. Returns how many moved.
 */
export async function revokeHeld(db: Db, clock: Clock, held: Held, suspensionId: string, by: RequestRef & { actor: string }): Promise<number> {
  const pattern = held.rule?.subject_pattern === undefined ? undefined : anchoredPattern(held.rule.subject_pattern);
  let moved = 0;
  const selectors = [
    ...(held.agent ? [{ selector: eq(leases.agent, held.agent), test: undefined }] : []),
    ...(held.rule
      ? [
          {
            selector: and(eq(leases.issuer, held.rule.issuer), held.rule.subject !== undefined ? eq(leases.subject, held.rule.subject) : undefined, held.unattributedOnly ? isNull(leases.agent) : undefined),
            test: pattern,
          },
        ]
      : []),
  ];
  for (const { selector, test } of selectors) {
    // Subject patterns are JavaScript's, not PostgreSQL's: candidates are read in id order and matched here.
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const page = await batchOnce(async () =>
        db.transaction(async (tx) => {
          const rows = await tx
            .select({ id: leases.id, subject: leases.subject })
            .from(leases)
            .where(and(eq(leases.status, 'active'), selector, gt(leases.id, after)))
            .orderBy(asc(leases.id))
            .limit(BATCH)
            .for('update');
          const ids = rows.filter((r) => !test || test.test(r.subject)).map((r) => r.id);
          if (ids.length > 0) {
            const now = clock.now();
            await tx.update(agentSuspensions).set({ revoked: sql`${agentSuspensions.revoked} + ${ids.length}` }).where(eq(agentSuspensions.id, suspensionId));
            const where = sql`${leases.id} = any(array(select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid))`;
            await markRevoking(tx, { where, reason: 'agent_suspended', actor: by.actor, now, ...requestRef(by), note: `suspension ${suspensionId}` });
          }
          return { count: ids.length, last: rows.at(-1)?.id, full: rows.length === BATCH };
        }),
      );
      moved += page.count;
      if (!page.full || !page.last) break;
      after = page.last;
    }
  }
  return moved;
}

/** Runs a batch again when PostgreSQL broke a lock cycle by aborting it (a completion or the sweeper took rows in another order). */
async function batchOnce<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isDeadlock(err) || attempt >= 3) throw err;
    }
  }
}
