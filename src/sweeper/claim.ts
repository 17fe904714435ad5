import { and, asc, eq, inArray, isNull, lte, or, sql, type SQLWrapper } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { leases, type Lease } from '../db/schema.js';

/**
 * `id = any(array(subquery))`, not `id in (subquery)`: planned generically
 * (prepared), the IN form hash-joins a sequential scan of the whole lease table
 * to the few claimed ids; the array form is an index scan.
 */
const inAnyOf = (ids: SQLWrapper) => sql`${leases.id} = any(array(${ids}))`;

const unclaimed = (now: Date) => or(isNull(leases.claimUntil), lte(leases.claimUntil, now));

/**
 * Claims up to `limit` due leases for `claimer` until `claimUntil`: first those
 * waiting for revocation, then active ones past their expiry. SKIP LOCKED lets
 * replicas claim side by side; the claim itself is a committed stamp, so a
 * replica that dies mid-revocation leaves leases that become due again when
 * the stamp runs out.
 */
export async function claimDue(db: Db, claimer: string, now: Date, claimUntil: Date, limit: number): Promise<Lease[]> {
  const revoking = db
    .select({ id: leases.id })
    .from(leases)
    .where(and(inArray(leases.status, ['revoking', 'revoke_failed']), lte(leases.nextAttemptAt, now), unclaimed(now)))
    .orderBy(asc(leases.nextAttemptAt))
    .limit(limit)
    .for('update', { skipLocked: true });
  const claimed = await db
    .update(leases)
    .set({ claimedBy: claimer, claimUntil })
    .where(inAnyOf(revoking))
    .returning();
  if (claimed.length >= limit) return claimed;
  const expired = db
    .select({ id: leases.id })
    .from(leases)
    .where(and(eq(leases.status, 'active'), lte(leases.expiresAt, now), unclaimed(now)))
    .orderBy(asc(leases.expiresAt))
    .limit(limit - claimed.length)
    .for('update', { skipLocked: true });
  const more = await db
    .update(leases)
    .set({ claimedBy: claimer, claimUntil })
    .where(inAnyOf(expired))
    .returning();
  return [...claimed, ...more];
}

/**
 * Matches rows still held by this claim (another replica may have re-claimed
 * after a timeout). The ids travel as one JSON parameter, so the statement
 * text does not vary with their number and is prepared once; compared as an
 * array, so even the generic plan is an index scan (see leases/record.ts).
 */
export const heldBy = (claimer: string, ids: string[]) =>
  and(sql`${leases.id} = any(array(select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid))`, eq(leases.claimedBy, claimer));

export const releaseClaim = { claimedBy: sql`null`, claimUntil: sql`null` } as const;
