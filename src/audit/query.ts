import { and, asc, eq, gt, gte } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { auditEvents } from '../db/schema.js';

export interface AuditFilter {
  actor?: string;
  action?: string;
  target?: string;
  since?: Date;
}

/** Oldest first; `after` is the last `seq` of the previous page. */
export async function listAudit(db: Db, filter: AuditFilter, after: number | undefined, limit: number) {
  const rows = await db
    .select()
    .from(auditEvents)
    .where(
      and(
        filter.actor ? eq(auditEvents.actor, filter.actor) : undefined,
        filter.action ? eq(auditEvents.action, filter.action) : undefined,
        filter.target ? eq(auditEvents.target, filter.target) : undefined,
        filter.since ? gte(auditEvents.at, filter.since) : undefined,
        after !== undefined ? gt(auditEvents.seq, after) : undefined,
      ),
    )
    .orderBy(asc(auditEvents.seq))
    .limit(limit + 1);
  const page = rows.slice(0, limit);
  return { items: page, nextCursor: rows.length > limit ? String(page.at(-1)!.seq) : null };
}
