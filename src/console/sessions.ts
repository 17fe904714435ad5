import { randomBytes } from 'node:crypto';
import { and, desc, eq, gt, isNotNull, isNull, lt, lte, or, type SQL } from 'drizzle-orm';
import { appendAudit, requestRef, type RequestRef } from '../audit/append.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { consoleSessions, type ConsoleSession } from '../db/schema.js';
import { actorOf } from '../identity/types.js';
import { digestsEqual, sha256Hex } from '../ids.js';

export interface SessionDeps {
  db: Db;
  clock: Clock;
  idleSeconds: number;
  absoluteSeconds: number;
}

/** A person's last_seen_at is written at most this often, so reading pages costs no write each. */
const TOUCH_EVERY_MS = 60_000;

/**
 * The CSRF token of a session: derived from the session token (never
 * stored), so only the holder of the cookie can know it, and a leak of the
 * table (which holds SHA-256 of the token, a different digest) reveals neither.
 */
export const csrfTokenOf = (sessionToken: string) => sha256Hex(`tasklease console csrf\n${sessionToken}`);

/** Constant-time check of a submitted CSRF token against the session's. */
export function csrfValid(sessionToken: string, submitted: unknown): boolean {
  return typeof submitted === 'string' && /^[0-9a-f]{64}$/.test(submitted) && digestsEqual(csrfTokenOf(sessionToken), submitted);
}

/**
 * Server-side console sessions. The cookie carries a random token; the row's
 * id is its SHA-256, so the database never holds what opens a session. Every
 * read checks revocation, the idle timeout and the absolute timeout against
 * the database, so logout on one replica ends the session on all of them.
 * Login and logout are audited in the transaction that makes them.
 */
export function createSessionStore({ db, clock, idleSeconds, absoluteSeconds }: SessionDeps) {
  const idleCutoff = (now: Date) => new Date(now.getTime() - idleSeconds * 1000);
  /** The rows find() would still accept: not revoked, not idle too long, not past their absolute end. */
  const live = (now: Date) => and(isNull(consoleSessions.revokedAt), gt(consoleSessions.expiresAt, now), gt(consoleSessions.lastSeenAt, idleCutoff(now)));

  /**
   * Sets revoked_at on the live sessions `which` selects and audits it in the same transaction, so every
   * replica's next find() refuses them (and their live streams end within a tick). Returns the actors'
   * sessions revoked; none revoked audits nothing.
   */
  async function revokeWhere(which: SQL, by: string, reason: string, request: RequestRef): Promise<ConsoleSession[]> {
    const now = clock.now();
    return db.transaction(async (tx) => {
      const gone = await tx.update(consoleSessions).set({ revokedAt: now }).where(and(which, live(now))).returning();
      const byActor = new Map<string, number>();
      for (const s of gone) byActor.set(s.actor, (byActor.get(s.actor) ?? 0) + 1);
      if (byActor.size > 0) {
        await appendAudit(
          tx,
          [...byActor].map(([actor, n]) => ({ at: now, actor: by, action: 'console.session_revoked', target: `console:${actor}`, decision: 'allow' as const, reason, details: { reason, sessions: n }, ...requestRef(request) })),
        );
      }
      return gone;
    });
  }

  return {
    async create(person: { issuer: string; subject: string; claims?: Record<string, unknown> }, request: RequestRef & { via: string }): Promise<{ token: string; session: ConsoleSession }> {
      const token = randomBytes(32).toString('base64url');
      const now = clock.now();
      const actor = actorOf(person);
      const session = await db.transaction(async (tx) => {
        const [row] = await tx
          .insert(consoleSessions)
          .values({ id: sha256Hex(token), issuer: person.issuer, subject: person.subject, actor, claims: person.claims ?? {}, createdAt: now, lastSeenAt: now, expiresAt: new Date(now.getTime() + absoluteSeconds * 1000) })
          .returning();
        await appendAudit(tx, [{ at: now, actor, action: 'console.login', target: `console:${actor}`, decision: 'allow', details: { via: request.via }, ...requestRef(request) }]);
        return row!;
      });
      return { token, session };
    },

    /** The live session a token opens, or undefined (unknown, revoked, idle too long, past its absolute end). */
    async find(token: string): Promise<ConsoleSession | undefined> {
      if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
      const now = clock.now();
      const [row] = await db
        .select()
        .from(consoleSessions)
        .where(and(eq(consoleSessions.id, sha256Hex(token)), isNull(consoleSessions.revokedAt), gt(consoleSessions.expiresAt, now), gt(consoleSessions.lastSeenAt, idleCutoff(now))));
      return row;
    },

    /** The live sessions, newest first, at most `limit` (the admins' Sessions page). */
    async list(limit = 200): Promise<ConsoleSession[]> {
      return db.select().from(consoleSessions).where(live(clock.now())).orderBy(desc(consoleSessions.createdAt), desc(consoleSessions.id)).limit(limit);
    },

    /** An admin ends one live session (by its id, the token's SHA-256, which opens nothing). Returns it, or undefined when none is live. */
    async revoke(id: string, by: string, reason: string, request: RequestRef): Promise<ConsoleSession | undefined> {
      if (!/^[0-9a-f]{64}$/.test(id)) return undefined;
      return (await revokeWhere(eq(consoleSessions.id, id), by, reason, request))[0];
    },

    /** An admin ends every live session of one actor (`issuer/subject`). Returns those ended. */
    async revokeActor(actor: string, by: string, reason: string, request: RequestRef): Promise<ConsoleSession[]> {
      return revokeWhere(eq(consoleSessions.actor, actor), by, reason, request);
    },

    /** Records a person's action (not a live update), at most once a minute. */
    async touch(session: ConsoleSession): Promise<void> {
      const now = clock.now();
      if (now.getTime() - session.lastSeenAt.getTime() < TOUCH_EVERY_MS) return;
      await db.update(consoleSessions).set({ lastSeenAt: now }).where(eq(consoleSessions.id, session.id));
    },

    /** Logout: the row goes, so the cookie opens nothing on any replica. */
    async end(session: ConsoleSession, request: RequestRef): Promise<void> {
      const now = clock.now();
      await db.transaction(async (tx) => {
        await tx.delete(consoleSessions).where(eq(consoleSessions.id, session.id));
        await appendAudit(tx, [{ at: now, actor: session.actor, action: 'console.logout', target: `console:${session.actor}`, ...requestRef(request) }]);
      });
    },

    /** Deletes sessions that can no longer be used (the sweeper's housekeeping calls this). */
    async prune(): Promise<number> {
      const now = clock.now();
      const gone = await db
        .delete(consoleSessions)
        .where(or(lte(consoleSessions.expiresAt, now), lt(consoleSessions.lastSeenAt, idleCutoff(now)), isNotNull(consoleSessions.revokedAt)))
        .returning({ id: consoleSessions.id });
      return gone.length;
    },
  };
}
export type SessionStore = ReturnType<typeof createSessionStore>;
