import { eq, sql } from 'drizzle-orm';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { isDeadlock } from '../db/errors.js';
import { registryState } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { AgentRegistry } from './registry.js';

/**
 * How every change to the registry runs: one transaction that first takes
 * `registry_state` and gives it a new version, then makes its change. The
 * table lock (EXCLUSIVE, which only the commits' FOR SHARE row locks conflict
 * with) queues fairly, so a stream of issuance commits, each holding the row
 * FOR SHARE a moment, cannot keep a suspension waiting: commits that come
 * after it wait for it. The version is random, compared for equality only, so
 * a database restored to an older state never repeats one a replica holds.
 * A deadlock (PostgreSQL aborting this transaction to break a lock cycle)
 * runs it again: it rolled back whole, audit events included.
 */
export function createRegistryChange({ db, clock, registry, log }: { db: Db; clock: Clock; registry: AgentRegistry; log: Logger }) {
  return async function change<T>(fn: (tx: Db, now: Date) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const now = clock.now();
      try {
        const result = await db.transaction(async (tx) => {
          await tx.execute(sql`lock table registry_state in exclusive mode`);
          const moved = await tx
            .update(registryState)
            .set({ generation: sql`floor(random() * 9007199254740991)::bigint` })
            .where(eq(registryState.id, 1))
            .returning({ generation: registryState.generation });
          if (moved.length !== 1) throw new Error('registry_state has no row: the agent registry cannot be changed');
          return fn(tx, now);
        });
        // Committed: this replica reads it now (the others when it is announced); a failed read is retried on the next decision.
        await registry.reload().catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : 'unknown' }, 'could not reload the agent registry'));
        return result;
      } catch (err) {
        if (!isDeadlock(err) || attempt >= 3) throw err;
      }
    }
  };
}
export type RegistryChange = ReturnType<typeof createRegistryChange>;
