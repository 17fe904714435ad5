import { getTableColumns, sql } from 'drizzle-orm';
import { integer, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { describe, expect, it } from 'vitest';
import { rowCodec } from '../../src/db/rows.js';
import { leases } from '../../src/db/schema.js';

describe('rows from a table definition', () => {
  it('fills the literal defaults and names each column as the database does', () => {
    const t = pgTable('t', { id: text('id').primaryKey(), tries: integer('tries_made').notNull().default(3), at: timestamp('at_time', { withTimezone: true, mode: 'date' }) });
    const codec = rowCodec(t);
    expect(codec.stored({ id: 'a' })).toEqual({ id: 'a', tries: 3, at: null });
    expect(codec.json({ id: 'a', at: new Date(0) })).toEqual({ id: 'a', tries_made: 3, at_time: '1970-01-01T00:00:00.000Z' });
  });

  it('refuses a table whose default only the database or drizzle knows', () => {
    expect(() => rowCodec(pgTable('t', { at: timestamp('at').defaultNow() }))).toThrow(/at has a default/);
    expect(() => rowCodec(pgTable('t', { v: integer('v').default(sql`1 + 1`) }))).toThrow(/v has a default/);
    expect(() => rowCodec(pgTable('t', { v: text('v').$defaultFn(() => 'x') }))).toThrow(/v has a default/);
  });

  it('covers every column of the lease table', () => {
    const json = rowCodec(leases).json({ id: 'i', taskId: 't', role: 'r', backend: 'b', issuer: 'is', subject: 's', tokenSha256: 'h', status: 'active', credentialRef: 'c', issuedAt: new Date(0), expiresAt: new Date(0), backendExpiresAt: new Date(0) });
    expect(Object.keys(json).sort()).toEqual(Object.values(getTableColumns(leases)).map((c) => c.name).sort());
    expect(json).toMatchObject({ task_id: 't', revocable: true, attempts: 0, reason: null, agent_owner: null });
  });
});
