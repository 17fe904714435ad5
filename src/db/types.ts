import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { schema } from './schema.js';

/** The one database type the services see, whichever driver is underneath (also a transaction). */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
