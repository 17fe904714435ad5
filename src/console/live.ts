import { and, inArray, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { approvals } from '../db/schema.js';

/**
 * A fingerprint of the approvals a page shows, read once per second per live
 * page: how many are pending and approved, and the newest of them. Any
 * request arriving, decided, expiring or redeemed changes it (an arrival
 * raises the newest id; every other change moves a count). It reads only the
 * rows of the partial index on pending and approved requests.
 */
export async function approvalsFingerprint(db: Db, roles: string[] | undefined): Promise<string> {
  if (roles && roles.length === 0) return 'none';
  const [row] = await db
    .select({
      pending: sql<number>`count(*) filter (where ${approvals.status} = 'pending')::int`,
      approved: sql<number>`count(*) filter (where ${approvals.status} = 'approved')::int`,
      newest: sql<string | null>`max(${approvals.id}::text)`,
    })
    .from(approvals)
    .where(and(inArray(approvals.status, ['pending', 'approved']), roles ? inArray(approvals.role, roles) : undefined));
  return `${row?.pending ?? 0}/${row?.approved ?? 0}/${row?.newest ?? ''}`;
}
