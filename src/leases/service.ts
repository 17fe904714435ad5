import { and, count, desc, eq, lt, lte, type SQL } from 'drizzle-orm';
import { requestRef, type AuditInput } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { leases, type Lease, type LeaseStatus } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { markRevoking } from './revoke.js';

export interface LeaseServiceDeps {
  db: Db;
  clock: Clock;
  /** Called after a commit that left leases in `revoking`, so the sweeper starts at once. */
  onRevokeRequested: () => void;
}

export interface LeaseFilter {
  status?: LeaseStatus;
  task?: string;
  subject?: string;
  role?: string;
  backend?: string;
  agent?: string;
  issued_before?: Date;
}

export interface Actor {
  actor: string;
  requestId?: string | null;
  clientRequestId?: string | null;
}

const ownedBy = (identity: Identity) => and(eq(leases.issuer, identity.issuer), eq(leases.subject, identity.subject));

function filterWhere(filter: LeaseFilter): SQL | undefined {
  return and(
    filter.status ? eq(leases.status, filter.status) : undefined,
    filter.task ? eq(leases.taskId, filter.task) : undefined,
    filter.subject ? eq(leases.subject, filter.subject) : undefined,
    filter.role ? eq(leases.role, filter.role) : undefined,
    filter.backend ? eq(leases.backend, filter.backend) : undefined,
    filter.agent ? eq(leases.agent, filter.agent) : undefined,
    filter.issued_before ? lte(leases.issuedAt, filter.issued_before) : undefined,
  );
}

/** The admin's own action, audited even when it matches nothing. */
function adminEvent(by: Actor, now: Date, target: string, note: string, details: Record<string, unknown>): AuditInput {
  return { at: now, actor: by.actor, action: 'admin.revoke', target, decision: 'allow', reason: note, details, ...requestRef(by) };
}

export function createLeaseService({ db, clock, onRevokeRequested }: LeaseServiceDeps) {
  async function findOne(where: SQL | undefined): Promise<Lease | undefined> {
    const [lease] = await db.select().from(leases).where(where);
    return lease;
  }

  /** Revokes the leases matched by `where`; answers the lease afterwards, or 404 if `where` matches nothing. */
  async function revokeOne(where: SQL | undefined, reason: string, by: Actor, note?: string, adminTarget?: string): Promise<Lease> {
    const now = clock.now();
    const moved = await db.transaction((tx) =>
      markRevoking(tx, {
        where,
        reason,
        actor: by.actor,
        now,
        ...requestRef(by),
        note,
        precedingEvents: adminTarget ? [adminEvent(by, now, adminTarget, note ?? '', {})] : [],
      }),
    );
    if (moved.length > 0) onRevokeRequested();
    const lease = await findOne(where);
    if (!lease) throw new AppError('lease_not_found', 'no such lease');
    return lease;
  }

  return {
    /** An agent's own lease; another's is indistinguishable from a missing one. */
    async getOwn(identity: Identity, id: string): Promise<Lease> {
      const lease = await findOne(and(eq(leases.id, id), ownedBy(identity)));
      if (!lease) throw new AppError('lease_not_found', 'no such lease');
      return lease;
    },

    /** The agent gives its credential back early. Idempotent: releasing an ended lease changes nothing. */
    release(identity: Identity, id: string, by: Actor): Promise<Lease> {
      return revokeOne(and(eq(leases.id, id), ownedBy(identity)), 'released', by);
    },

    /**
     * RFC 7009 revocation by the credential's holder (oauth/revoke.ts): the agent's own lease ends with
     * `holder_revoked`; a lease that is not the caller's is left alone, and nothing says whether it exists.
     */
    async holderRevoke(identity: Identity, id: string, by: Actor): Promise<void> {
      const own = and(eq(leases.id, id), ownedBy(identity));
      if (await findOne(own)) await revokeOne(own, 'holder_revoked', by);
    },

    get: (id: string) => findOne(eq(leases.id, id)),

    adminRevoke(id: string, by: Actor, note: string): Promise<Lease> {
      return revokeOne(eq(leases.id, id), 'admin', by, note, `lease:${id}`);
    },

    /** Revokes every active lease matching the filter; returns how many moved to `revoking`. */
    async bulkRevoke(filter: LeaseFilter, by: Actor, note: string): Promise<number> {
      // Never every lease at once, whichever surface asks: status alone selects nothing here.
      const { status: _status, ...selectors } = filter;
      if (Object.values(selectors).every((v) => v === undefined)) throw new AppError('validation_failed', 'a bulk revocation names at least one of task, subject, role, backend, agent, issued_before');
      const now = clock.now();
      const selector = Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined));
      const moved = await db.transaction((tx) =>
        markRevoking(tx, {
          where: filterWhere(filter),
          reason: 'admin',
          actor: by.actor,
          now,
          ...requestRef(by),
          note,
          precedingEvents: [adminEvent(by, now, 'leases:bulk', note, { selector })],
        }),
      );
      if (moved.length > 0) onRevokeRequested();
      return moved.length;
    },

    /** How many active leases `bulkRevoke` with this filter would move now: what a confirmation shows. */
    async countActive(filter: LeaseFilter): Promise<number> {
      const [row] = await db.select({ n: count() }).from(leases).where(and(eq(leases.status, 'active'), filterWhere(filter)));
      return Number(row?.n ?? 0);
    },

    /** Newest first; `cursor` is the last id of the previous page (ids are UUIDv7, so sortable). */
    async list(filter: LeaseFilter, cursor: string | undefined, limit: number) {
      const rows = await db
        .select()
        .from(leases)
        .where(and(filterWhere(filter), cursor ? lt(leases.id, cursor) : undefined))
        .orderBy(desc(leases.id))
        .limit(limit + 1);
      const page = rows.slice(0, limit);
      return { items: page, nextCursor: rows.length > limit ? page.at(-1)!.id : null };
    },
  };
}
export type LeaseService = ReturnType<typeof createLeaseService>;
