import { z } from 'zod';
import { DurationSchema } from './duration.js';

/**
 * The console's sessions. A session ends after `idle_timeout` without a
 * person's action (live updates do not count), and `absolute_timeout` after
 * login whatever happens. Login for people (`console.oidc`) is not built yet:
 * only dev mode's dev login exists.
 */
export const ConsoleSchema = z
  .strictObject({
    idle_timeout: DurationSchema.default(30 * 60),
    absolute_timeout: DurationSchema.default(12 * 3600),
  })
  .refine((c) => c.idle_timeout >= 60 && c.idle_timeout <= c.absolute_timeout, 'idle_timeout must be at least 1m and at most absolute_timeout');
