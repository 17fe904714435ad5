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
 * transaction: the suspension's row first (a batch stops once it has been
 * lifted), then the batch's leases in id order (FOR UPDATE), then they move,
 * and the suspension's count with them. It runs after the
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
          // Candidates unlocked: a pattern's non-matching leases of the issuer are read, never locked.
          const candidates = await tx
            .select({ id: leases.id, subject: leases.subject })
            .from(leases)
            .where(and(eq(leases.status, 'active'), selector, gt(leases.id, after)))
            .orderBy(asc(leases.id))
            .limit(BATCH);
          const page = { count: 0, last: candidates.at(-1)?.id, full: candidates.length === BATCH, ended: false };
          // Still in force? Its row, locked first: a resume waits for this batch, or this batch sees it and stops
          // (never revoking what the agent was issued after it).
          const inForce = await tx
            .select({ id: agentSuspensions.id })
            .from(agentSuspensions)
            .where(and(eq(agentSuspensions.id, suspensionId), isNull(agentSuspensions.resumedAt)))
            .for('update');
          if (inForce.length === 0) return { ...page, ended: true };
          const ids = candidates.filter((r) => !test || test.test(r.subject)).map((r) => r.id);
          if (ids.length === 0) return page;
          const byIds = sql`${leases.id} = any(array(select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid))`;
          // Then the leases, in id order (one order for every batch), still active.
          const locked = await tx.select({ id: leases.id }).from(leases).where(and(byIds, eq(leases.status, 'active'))).orderBy(asc(leases.id)).for('update');
          if (locked.length === 0) return page;
          await tx.update(agentSuspensions).set({ revoked: sql`${agentSuspensions.revoked} + ${locked.length}` }).where(eq(agentSuspensions.id, suspensionId));
          const lockedIds = sql`${leases.id} = any(array(select jsonb_array_elements_text(${JSON.stringify(locked.map((l) => l.id))}::jsonb)::uuid))`;
          const moved = await markRevoking(tx, { where: lockedIds, reason: 'agent_suspended', actor: by.actor, now: clock.now(), ...requestRef(by), note: `suspension ${suspensionId}` });
          return { ...page, count: moved.length };
        }),
      );
      moved += page.count;
      if (page.ended) return moved;
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
