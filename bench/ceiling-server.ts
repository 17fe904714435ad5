/**
 * The ceilings the broker is measured against, served by the same HTTP stack
 * and driven by the same load generator: bare Hono returning JSON, and one
 * durable single-row INSERT through postgres.js per request.
 * Usage: ceiling-server.ts <port> <postgres url> <pool size>
 */
import { randomUUID } from 'node:crypto';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import postgres from 'postgres';

const [port, url, pool] = process.argv.slice(2);
const sql = postgres(url!, { max: Number(pool), onnotice: () => {} });
await sql`create table if not exists bench_ceiling (id uuid primary key, subject text not null, at timestamptz not null)`;

const app = new Hono()
  .get('/json', (c) => c.json({ ok: true }))
  .post('/insert', async (c) => {
    const id = randomUUID();
    await sql`insert into bench_ceiling (id, subject, at) values (${id}, ${'agent'}, now())`;
    return c.json({ id }, 201);
  });

serve({ fetch: app.fetch, port: Number(port), hostname: '127.0.0.1' }, () => process.stdout.write('listening\n'));
