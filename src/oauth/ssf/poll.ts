import { and, asc, eq, inArray, lte, sql } from 'drizzle-orm';
import { z } from 'zod';
import { createWakeable } from '../../concurrency.js';
import { outbox, OUTBOX_KINDS } from '../../db/schema.js';
import { UUID_RE } from '../../ids.js';
import { signSecurityEvent, type SsfDeps } from './events.js';

const Jti = z.string().min(1).max(64);

/** An RFC 8936 poll request (section 2.4): acknowledgements, errors for SETs the receiver could not process, and how many more it wants. */
export const PollRequestSchema = z.object({
  ack: z.array(Jti).max(1000).default([]),
  setErrs: z.record(Jti, z.object({ err: z.string().max(200), description: z.string().max(2000).optional() })).default({}),
  maxEvents: z.number().int().min(0).max(1000).optional(),
  returnImmediately: z.boolean().default(false),
});
export type PollRequest = z.output<typeof PollRequestSchema>;

const DEFAULT_MAX_EVENTS = 100;
/** Between checks while waiting: another replica's events are seen within this long. */
const RECHECK_MS = 500;

/**
 * Poll delivery of security events (RFC 8936). A SET stays in the outbox
 * until its receiver acknowledges it (or reports it could not process it,
 * which is logged and counted and not sent again); one handed out and not
 * acknowledged is handed out again after `poll_redelivery`. Two polls at once
 * never get the same SET (SKIP LOCKED). A poll that finds nothing waits up to
 * `poll_wait` (10 s) unless it asks to return immediately. Proved by test/oauth/ssf.test.ts.
 */
export function createSecurityEventPoll(deps: SsfDeps) {
  const { db, clock } = deps;
  // Waiting polls, woken when this replica writes an event.
  const waiting = createWakeable();
  const mine = (receiver: string) => and(eq(outbox.kind, OUTBOX_KINDS.securityEvent), eq(outbox.destination, receiver));

  async function settle(receiver: string, request: PollRequest): Promise<void> {
    const now = clock.now();
    const acked = request.ack.filter((id) => UUID_RE.test(id));
    if (acked.length > 0) {
      const done = await db
        .update(outbox)
        .set({ status: 'delivered', deliveredAt: now, nextAttemptAt: now })
        .where(and(mine(receiver), inArray(outbox.id, acked), inArray(outbox.status, ['pending', 'failed'])))
        .returning({ id: outbox.id });
      deps.metrics?.securityEventsDelivered.inc({ receiver }, done.length);
    }
    for (const [id, { err }] of Object.entries(request.setErrs)) {
      if (!UUID_RE.test(id)) continue;
      // The receiver's error code only, and only when it looks like one: its description is its own text.
      const code = /^[a-z_]{1,40}$/.test(err) ? err : 'unrecognised error code';
      const [row] = await db
        .update(outbox)
        .set({ status: 'delivered', deliveredAt: now, nextAttemptAt: now, lastError: `the receiver could not process it: ${code}` })
        .where(and(mine(receiver), eq(outbox.id, id), inArray(outbox.status, ['pending', 'failed'])))
        .returning({ id: outbox.id });
      if (!row) continue;
      deps.metrics?.securityEventFailures.inc({ receiver });
      deps.log.warn({ receiver, event: id, err: code }, 'a receiver could not process a security event');
    }
  }

  async function take(receiver: string, max: number): Promise<{ sets: Record<string, string>; moreAvailable: boolean }> {
    const now = clock.now();
    const due = and(mine(receiver), inArray(outbox.status, ['pending', 'failed']), lte(outbox.nextAttemptAt, now));
    const ids = db.select({ id: outbox.id }).from(outbox).where(due).orderBy(asc(outbox.createdAt), asc(outbox.id)).limit(max).for('update', { skipLocked: true });
    const again = new Date(now.getTime() + deps.config.security_events.poll_redelivery * 1000);
    const rows = await db
      .update(outbox)
      .set({ nextAttemptAt: again })
      .where(sql`${outbox.id} = any(array(${ids}))`)
      .returning();
    const sets: Record<string, string> = {};
    for (const row of rows) sets[row.id] = await signSecurityEvent(deps.keys, deps.issuer, row);
    const moreAvailable = rows.length === max && (await db.select({ id: outbox.id }).from(outbox).where(due).limit(1)).length > 0;
    return { sets, moreAvailable };
  }

  return {
    async poll(receiver: string, request: PollRequest, signal?: AbortSignal) {
      await settle(receiver, request);
      const max = request.maxEvents ?? DEFAULT_MAX_EVENTS;
      if (max === 0) return { sets: {}, moreAvailable: false };
      const deadline = Date.now() + (request.returnImmediately ? 0 : deps.config.security_events.poll_wait * 1000);
      for (;;) {
        const taken = await take(receiver, max);
        const left = deadline - Date.now();
        if (Object.keys(taken.sets).length > 0 || left <= 0 || signal?.aborted) return taken;
        await waiting.sleep('', Math.min(left, RECHECK_MS), signal);
      }
    },
    /** Events were written on this replica: waiting polls look again now. */
    appended() {
      waiting.wakeAll();
    },
  };
}
export type SecurityEventPoll = ReturnType<typeof createSecurityEventPoll>;
