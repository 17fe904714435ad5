/**
 * The ceilings the broker is measured against, served by the same HTTP stack
 * and driven by the same load generator: bare Hono returning JSON, and one
 * durable single-row INSERT through postgres.js per request; for scenario 2,
 * the same after a 50 ms wait (BENCH_BACKEND_DELAY_MS), as the slow backend
 * waits: what this machine adds to a 50 ms wait with nothing else, and with
 * the one durable write a credential needs.
 * Usage: ceiling-server.ts <port> <postgres url> <pool size>
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import postgres from 'postgres';

const [port, url, pool] = process.argv.slice(2);
const sql = postgres(url!, { max: Number(pool), onnotice: () => {} });
await sql`create table if not exists bench_ceiling (id uuid primary key, subject text not null, at timestamptz not null)`;

const delayMs = Number(process.env.BENCH_BACKEND_DELAY_MS ?? 50);
const insert = () => sql`insert into bench_ceiling (id, subject, at) values (${randomUUID()}, ${'agent'}, now())`;

const app = new Hono()
  .get('/json', (c) => c.json({ ok: true }))
  .post('/insert', async (c) => {
    await insert();
    return c.json({ ok: true }, 201);
  })
  .post('/wait', async (c) => {
    await sleep(delayMs);
    return c.json({ ok: true }, 201);
  })
  .post('/wait-insert', async (c) => {
    await sleep(delayMs);
    await insert();
    return c.json({ ok: true }, 201);
  });

serve({ fetch: app.fetch, port: Number(port), hostname: '127.0.0.1' }, () => process.stdout.write('listening\n'));
