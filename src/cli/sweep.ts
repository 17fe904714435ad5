import { createBroker } from '../broker.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { runMigrations } from '../db/migrate.js';
import { createLogger } from '../log.js';
import type { SweepResult } from '../sweeper/sweeper.js';
import { instanceId, openConfiguredDatabase } from './context.js';

/** `tasklease sweep`: one pass over every due lease, then exit. */
export async function runSweepOnce(config: Config, version: string): Promise<SweepResult> {
  const database = await openConfiguredDatabase(config);
  try {
    await runMigrations(database);
    const broker = await createBroker({ config, database, clock: systemClock, log: createLogger(config.log_level), instanceId: instanceId(), version });
    return await broker.sweeper.runOnce();
  } finally {
    await database.close();
  }
}
