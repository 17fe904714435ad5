import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentRegistry, REGISTRY_CHANNEL } from '../../src/agents/registry.js';
import { createManualClock } from '../../src/clock.js';
import { agents, registryState } from '../../src/db/schema.js';
import { createLogger } from '../../src/log.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';

const identity = (subject: string) => ({ issuer: 'test', subject, claims: { sub: subject }, tokenSha256: '', expiresAt: new Date() });
const definition = (subject: string) => ({ match: { issuer: 'test', subject }, owner: { name: 'o', contact: 'o@example.com' }, purpose: 'p', roles: ['demo'] });

/** A change as any replica (or an operator by hand) makes one: the row, and the generation moved in the same transaction. */
async function register(database: TestDatabase, name: string) {
  await database.db.transaction(async (tx) => {
    await tx.update(registryState).set({ generation: sql`${registryState.generation} + 1` }).where(eq(registryState.id, 1));
    await tx.insert(agents).values({ name, definition: definition(name), createdBy: 'test', createdAt: new Date() });
  });
}

describe.each(DRIVERS)("a replica's registry, on %s", (driver) => {
  let database!: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase(driver);
  }, 60_000);
  afterAll(() => database?.drop());

  it('reloads when the database announces a new generation', async () => {
    const clock = createManualClock(new Date());
    const registry = createAgentRegistry({ db: database.db, clock, log: createLogger('silent'), configured: [] });
    const listener = database.listen(REGISTRY_CHANNEL, registry.handlers);
    try {
      await expect.poll(async () => (await registry.snapshot()).generation).toBeGreaterThanOrEqual(0);
      expect((await registry.resolve(identity('announced'))).kind).toBe('unregistered');
      await register(database, 'announced');
      // No clock movement: only the announcement can make the registry read again.
      await expect.poll(async () => (await registry.resolve(identity('announced'))).kind, { timeout: 5000 }).toBe('agent');
    } finally {
      await listener.close();
    }
  });

  it('while announcements may be missed, trusts what it read for a second only', async () => {
    const clock = createManualClock(new Date());
    const registry = createAgentRegistry({ db: database.db, clock, log: createLogger('silent'), configured: [] });
    registry.handlers.listening(false);
    expect((await registry.resolve(identity('unannounced'))).kind).toBe('unregistered');
    await register(database, 'unannounced');
    clock.advance(0.5);
    expect((await registry.resolve(identity('unannounced'))).kind).toBe('unregistered');
    clock.advance(0.6);
    expect((await registry.resolve(identity('unannounced'))).kind).toBe('agent');
  });
});
