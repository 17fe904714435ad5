import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { auditEvents } from '../../src/db/schema.js';
import { DRIVERS } from '../support/db.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';
import { openObservedDatabase, type ObservedDatabase } from '../support/observed-db.js';

/**
 * One identity that matches no role floods POST /v1/credentials (issue 14,
 * 3.2): its refusals must neither fill the audit chain, whose head every
 * issuance waits for, nor, once rate-limited, reach the database at all.
 */
describe.each(DRIVERS)('a flood of refusals from one identity on %s', (driver) => {
  let observed!: ObservedDatabase;
  let t!: TestBroker;
  /** A broker with no rate limit (the default). */
  let unlimited!: TestBroker;
  beforeAll(async () => {
    observed = await openObservedDatabase(driver);
    t = await startTestBroker(observed.database, { config: { policy: { rate_limit: { per_agent_per_second: 1, burst: 2 } } } });
    unlimited = await startTestBroker(observed.database, { clock: t.clock });
  });
  afterAll(() => observed?.close());

  /** A task bound to `subject`, for a role whose rules `subject` does not match. */
  async function openTask(subject: string): Promise<string> {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles: ['demo'], ttl_seconds: 3600 });
    expect(res.status, res.text).toBe(201);
    return res.json.task.id;
  }
  const request = (subject: string, task: string) => t.call('POST', '/v1/credentials', { subject }, { task, role: 'demo' });
  const denials = (subject: string) =>
    observed.direct.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.actor, `test/${subject}`), eq(auditEvents.action, 'credential.denied')))
      .orderBy(asc(auditEvents.seq));
  const deniedMetric = async (code: string) => (await t.broker.metrics.denied.get()).values.find((v) => v.labels.code === code)?.value ?? 0;

  it('200 requests write the first refusal of each kind at once and the repeats as one count, the metric counts all, and the chain verifies', async () => {
    const task = await openTask('intruder-1');
    const [deniedBefore, limitedBefore] = [await deniedMetric('role_denied'), await deniedMetric('rate_limited')];
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) statuses.push((await request('intruder-1', task)).status);
    expect(statuses.slice(0, 2)).toEqual([403, 403]);
    expect(statuses.slice(2).every((s) => s === 429)).toBe(true);
    expect(await deniedMetric('role_denied')).toBe(deniedBefore + 2);
    expect(await deniedMetric('rate_limited')).toBe(limitedBefore + 198);

    await t.broker.refusals.flushDue(); // waits for the rate-limited refusal written in the background
    const firsts = await denials('intruder-1');
    expect(firsts.map((e) => [e.details.code, e.details.count])).toEqual([
      ['role_denied', undefined],
      ['rate_limited', undefined],
    ]);
    expect(firsts.every((e) => e.target === `task:${task}` && e.requestId !== null)).toBe(true);

    // The window ends: its repeats are written as one event per kind, with their count.
    t.clock.advance(60);
    await t.broker.refusals.flushDue();
    const rows = await denials('intruder-1');
    expect(rows).toHaveLength(4);
    const repeats = rows.slice(2);
    expect(repeats.map((e) => [e.details.code, e.details.count, e.details.role])).toEqual([
      ['role_denied', 1, undefined],
      ['rate_limited', 197, undefined],
    ]);
    for (const e of repeats) {
      expect(e).toMatchObject({ decision: 'deny', target: 'agent:test/intruder-1', requestId: null });
      expect(e.details).toMatchObject({ window_start: firsts[0]!.at.toISOString(), window_end: new Date(firsts[0]!.at.getTime() + 60_000).toISOString() });
      expect(e.details.token_sha256).toBeUndefined();
    }
    expect(rows.reduce((n, e) => n + ((e.details.count as number | undefined) ?? 1), 0)).toBe(200);
    expect(await verifyAuditChain(observed.direct.db)).toMatchObject({ ok: true });
  });

  it('with no rate limit, made-up task ids and roles on every request still write one row a window, not one a request', async () => {
    const requests = Array.from({ length: 100 }, (_, i) => ({ task: `made-up-${driver}-${i}-${Math.random()}`, role: i % 2 ? 'demo' : 'other' }));
    for (const body of requests) expect((await unlimited.call('POST', '/v1/credentials', { subject: 'intruder-4' }, body)).status).toBe(404);
    expect(await denials('intruder-4')).toHaveLength(1);
    t.clock.advance(60);
    await unlimited.broker.refusals.flushDue();
    const rows = await denials('intruder-4');
    expect(rows.map((e) => [e.details.code, e.details.count, e.target])).toEqual([
      ['task_not_found', undefined, `task:${requests[0]!.task}`],
      ['task_not_found', 99, 'agent:test/intruder-4'],
    ]);
    expect(await verifyAuditChain(observed.direct.db)).toMatchObject({ ok: true });
  });

  it('answers rate-limited requests without sending anything to the database, even when it is gone', async () => {
    const task = await openTask('intruder-2');
    for (let i = 0; i < 3; i++) await request('intruder-2', task);
    await t.broker.refusals.flushDue();
    const before = observed.sent();
    for (let i = 0; i < 50; i++) expect((await request('intruder-2', task)).status).toBe(429);
    expect(observed.sent()).toBe(before);

    observed.down();
    try {
      for (let i = 0; i < 20; i++) expect((await request('intruder-2', task)).status).toBe(429);
      // The database really is gone: a refusal that must be written first is a 503.
      const other = await request('intruder-3', task);
      expect(other.status, other.text).toBe(503);
    } finally {
      observed.up();
    }

    await t.broker.refusals.drain();
    const rows = await denials('intruder-2');
    expect(rows.map((e) => [e.details.code, e.details.count])).toEqual([
      ['role_denied', undefined],
      ['rate_limited', undefined],
      ['role_denied', 1],
      ['rate_limited', 70],
    ]);
    expect(await verifyAuditChain(observed.direct.db)).toMatchObject({ ok: true });
  });
});
