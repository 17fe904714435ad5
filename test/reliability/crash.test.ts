// Crash during issuance: `tasklease serve` (dev mode, PostgreSQL) is SIGKILLed
// at random moments under issuance load and restarted, again and again. Every
// credential a client received must have its lease row (recorded before
// released); once the tasks complete, every lease ends revoked or expired; the
// audit chain stays intact.
import { Agent } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import {
  devTokens,
  http,
  HttpError,
  jtiOf,
  killBroker,
  runCli,
  sleep,
  startBroker,
  within,
  type Broker,
  useChildBrokers,
} from '../support/child-broker.js';

const AGENTS = Array.from({ length: 8 }, (_, i) => `agent-${i + 1}`);
const LOOPS = 16;
const KILLS = 20;
/**
 * The kill-and-restart phase stops here even if fewer kills were done (the test then fails). A restart
 * (loading the build of the sources, migrating) takes 1-6 s depending on the machine's load.
 */
const LOAD_PHASE_MS = 150_000;
const MAX_REQUESTS_PER_LOOP = 5_000;
const SETTLE_MS = 30_000;

interface Received {
  leaseId: string;
  token: string;
  task: string;
  agent: string;
}

describe('SIGKILL during issuance, 20 times over', () => {
  const child = useChildBrokers('crash');
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  afterAll(() => agent.destroy());

  it('releases no credential without a lease row, leaves no lease behind, keeps the audit chain intact', { timeout: 300_000 }, async () => {
    const { pg, env } = child;
    let broker: Broker = await startBroker(env);
    const tokens = await devTokens(env, ['orchestrator', ...AGENTS]);
    const run = Date.now().toString(36);
    const taskOf = new Map(AGENTS.map((a) => [a, `crash-${run}-${a}`]));
    for (const subject of taskOf.keys()) {
      const res = await http('POST', `${broker.url}/v1/tasks`, {
        token: tokens.orchestrator,
        body: { agent: { subject }, roles: ['demo'], ttl_seconds: 3600 },
      });
      expect(res.status, res.text).toBe(201);
      taskOf.set(subject, res.json.task.id);
    }

    // Where the load goes: the current instance, or a promise of the next one while it restarts.
    let up: { url: string } | undefined = { url: broker.url };
    let nextUp: Promise<void> = Promise.resolve();
    let markUp: () => void = () => {};
    let stop = false;

    const received: Received[] = [];
    const statuses = new Map<number, number>();
    const errors = new Map<string, number>();
    let cutMidResponse = 0;
    let requests = 0;

    const loop = async (i: number) => {
      const subject = AGENTS[i % AGENTS.length]!;
      const task = taskOf.get(subject)!;
      for (let n = 0; n < MAX_REQUESTS_PER_LOOP && !stop; n++) {
        const target = up;
        if (!target) {
          await nextUp;
          continue;
        }
        requests++;
        try {
          const res = await http('POST', `${target.url}/v1/credentials`, { token: tokens[subject], body: { task, role: 'demo' }, agent, timeoutMs: 10_000 });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 201) {
            const lease = res.json?.lease as { id?: string } | undefined;
            const token = res.json?.credentials?.token as string | undefined;
            expect(typeof lease?.id, res.text).toBe('string');
            expect(typeof token, 'a 201 carries a credential token').toBe('string');
            received.push({ leaseId: lease!.id!, token: token!, task, agent: subject });
          }
        } catch (err) {
          if (!(err instanceof HttpError)) throw err;
          errors.set(err.code, (errors.get(err.code) ?? 0) + 1);
          if (err.midResponse) cutMidResponse++;
          // The instance is gone (or going): wait for its successor rather than spin.
          if (up === target) await sleep(20);
          await nextUp;
        }
      }
    };

    const started = performance.now();
    const restartMs: number[] = [];
    let kills = 0;
    const loops = Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i)));
    loops.catch(() => {}); // awaited below; a failed expectation in a loop must not surface as unhandled first
    try {
      while (kills < KILLS && performance.now() - started < LOAD_PHASE_MS) {
        await sleep(50 + Math.random() * 350);
        up = undefined;
        nextUp = new Promise<void>((resolve) => (markUp = resolve));
        await killBroker(broker);
        kills++;
        const t0 = performance.now();
        broker = await startBroker(env);
        restartMs.push(performance.now() - t0);
        up = { url: broker.url };
        markUp();
      }
      // A last stretch of load on the instance that stays up.
      await sleep(300);
    } finally {
      stop = true;
      markUp();
    }
    await within(loops, 30_000, 'the load loops finishing');
    const loadMs = performance.now() - started;

    const errorCount = [...errors.values()].reduce((a, b) => a + b, 0);
    console.log(
      `[crash] ${kills} SIGKILLs in ${(loadMs / 1000).toFixed(1)} s; ${requests} requests: ` +
        `${statuses.get(201) ?? 0} x 201, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `${errorCount} connection errors ${JSON.stringify(Object.fromEntries(errors))} (${cutMidResponse} after the response had begun); ` +
        `restarts took ${Math.min(...restartMs).toFixed(0)}..${Math.max(...restartMs).toFixed(0)} ms`,
    );
    expect(kills).toBeGreaterThanOrEqual(KILLS);
    expect(received.length, 'some credentials were issued').toBeGreaterThan(0);
    // Nothing but 201 is expected from a healthy broker: no quotas, no rate limit in dev mode.
    expect([...statuses.keys()].filter((s) => s !== 201), JSON.stringify(Object.fromEntries(statuses))).toEqual([]);

    // (a) Recorded before released: every credential a client holds has its lease row and its issuance event.
    const rows = await pg.sql<{ id: string; task_id: string; subject: string; credential_ref: string; status: string }[]>`
      select id::text, task_id, subject, credential_ref, status from leases`;
    const byId = new Map(rows.map((r) => [r.id, r]));
    const issuedEvents = new Set(
      (await pg.sql<{ target: string }[]>`select target from audit_events where action = 'credential.issued'`).map((r) => r.target),
    );
    const missingRow = received.filter((r) => !byId.has(r.leaseId));
    const wrongRow = received.filter((r) => {
      const row = byId.get(r.leaseId);
      return row !== undefined && (row.task_id !== r.task || row.subject !== r.agent || row.credential_ref !== jtiOf(r.token));
    });
    const missingEvent = received.filter((r) => !issuedEvents.has(`lease:${r.leaseId}`));
    const duplicates = received.length - new Set(received.map((r) => r.leaseId)).size;
    console.log(
      `[crash] ${received.length} credentials received, ${rows.length} lease rows (${rows.length - received.length} recorded but never delivered); ` +
        `${missingRow.length} received without a lease row, ${missingEvent.length} without a credential.issued event`,
    );
    expect(missingRow.map((r) => r.leaseId), 'credentials received without a lease row').toEqual([]);
    expect(wrongRow.map((r) => r.leaseId), 'lease rows that do not match the credential received').toEqual([]);
    expect(missingEvent.map((r) => r.leaseId), 'credentials received without a credential.issued audit event').toEqual([]);
    expect(duplicates, 'no lease id was handed out twice').toBe(0);

    // (b) Complete every task; the sweepers revoke everything.
    for (const id of taskOf.values()) {
      const res = await http('POST', `${broker.url}/v1/tasks/${id}/complete`, { token: tokens.orchestrator, body: { outcome: 'success' } });
      expect(res.status, res.text).toBe(202);
    }
    const sweep = await runCli(['sweep'], env);
    expect(sweep.code, `sweep: ${sweep.stderr}`).toBe(0);
    const settleStarted = performance.now();
    let counts: Record<string, number> = {};
    for (;;) {
      const byStatus = await pg.sql<{ status: string; n: number }[]>`select status, count(*)::int as n from leases group by status`;
      counts = Object.fromEntries(byStatus.map((r) => [r.status, r.n]));
      const open = (counts.active ?? 0) + (counts.revoking ?? 0) + (counts.revoke_failed ?? 0);
      if (open === 0 || performance.now() - settleStarted > SETTLE_MS) break;
      await sleep(250);
    }
    console.log(`[crash] lease states after completion and sweep (${((performance.now() - settleStarted) / 1000).toFixed(1)} s): ${JSON.stringify(counts)}`);
    const stuck = await pg.sql<{ id: string; status: string; claimed_by: string | null; claim_until: Date | null; last_error: string | null }[]>`
      select id::text, status, claimed_by, claim_until, last_error from leases where status not in ('revoked', 'expired') limit 20`;
    expect(stuck, 'leases left in a non-terminal state').toEqual([]);
    expect(counts.revoke_failed ?? 0).toBe(0);
    const unended = await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where ended_at is null or claimed_by is not null`;
    expect(unended[0]!.n, 'terminal leases carry ended_at and no claim').toBe(0);
    // Each lease was finished once: exactly one lease.revoked or lease.expired event.
    const terminalEvents = await pg.sql<{ target: string; n: number }[]>`
      select target, count(*)::int as n from audit_events where action in ('lease.revoked', 'lease.expired') group by target`;
    const eventsOf = new Map(terminalEvents.map((r) => [r.target, r.n]));
    const notOnce = rows.filter((r) => eventsOf.get(`lease:${r.id}`) !== 1).map((r) => `${r.id}: ${eventsOf.get(`lease:${r.id}`) ?? 0}`);
    expect(notOnce.slice(0, 20), 'leases without exactly one terminal audit event').toEqual([]);

    // The last instance drains and exits 0.
    broker.child.kill('SIGTERM');
    const exit = await within(broker.exited, 10_000, 'the last instance exiting after SIGTERM');
    expect(exit, broker.stderr().slice(-2000)).toEqual({ code: 0, signal: null });

    // (c) The audit chain survived twenty crashes.
    const verify = await runCli(['audit', 'verify'], env);
    console.log(`[crash] audit verify: ${verify.stdout.trim()}`);
    expect(verify.code, `stdout: ${verify.stdout}\nstderr: ${verify.stderr}`).toBe(0);
  });
});
