// Three replicas on one PostgreSQL database. Leases are issued through all of
// them, tasks are completed through different ones while issuance goes on,
// and one replica is SIGKILLed in the middle of its sweep. Every lease of a
// completed task must be revoked exactly once (one lease.revoked audit event,
// since the jwt backend's revoke is a no-op), none missed: the leases the dead
// replica had claimed are taken over by the survivors once its claim runs out.
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
  until,
  within,
  type Broker,
  useChildBrokers,
} from '../support/child-broker.js';

const AGENTS = Array.from({ length: 6 }, (_, i) => `agent-${i + 1}`);
const LEASES_PER_TASK = 100;
const LOOPS = 12;
const MAX_REQUESTS_PER_LOOP = 3_000;
const SETTLE_MS = 15_000;

interface Received {
  leaseId: string;
  token: string;
  task: string;
}

describe('three replicas, one killed while sweeping', () => {
  const child = useChildBrokers('replicas');
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  afterAll(() => agent.destroy());


  it('revokes every lease of a completed task exactly once, taking over the dead replica\u2019s claims', { timeout: 240_000 }, async () => {
    const { pg, env } = child;
    // The first replica creates the keys under the shared data dir; the other two start on them.
    const first = await startBroker(env);
    const replicas: Broker[] = [first, ...(await Promise.all([startBroker(env), startBroker(env)]))];
    const [a, b, victim] = replicas as [Broker, Broker, Broker];
    const live = new Set<Broker>(replicas);
    const tokens = await devTokens(env, ['orchestrator', ...AGENTS]);
    const run = Date.now().toString(36);
    const taskOf = new Map(AGENTS.map((s) => [s, `replicas-${run}-${s}`]));

    let rr = 0;
    const next = () => {
      const list = [...live];
      return list[rr++ % list.length]!;
    };
    const received: Received[] = [];
    const statuses = new Map<string, number>();
    const errors = new Map<string, number>();
    const perReplica = new Map<number, number>();
    const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

    /** One issuance through the next replica in turn. */
    const issue = async (subject: string) => {
      const task = taskOf.get(subject)!;
      const replica = next();
      try {
        const res = await http('POST', `${replica.url}/v1/credentials`, { token: tokens[subject], body: { task, role: 'demo' }, agent, timeoutMs: 10_000 });
        count(statuses, `${res.status}${res.status === 201 ? '' : ` ${res.json?.code ?? ''}`}`);
        if (res.status === 201) {
          received.push({ leaseId: res.json.lease.id as string, token: res.json.credentials.token as string, task });
          perReplica.set(replica.pid, (perReplica.get(replica.pid) ?? 0) + 1);
        }
        return res.status;
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        count(errors, `${err.code}${live.has(replica) ? '' : ' (killed replica)'}`);
        return 0;
      }
    };

    // Tasks opened through different replicas.
    for (const [i, subject] of [...taskOf.keys()].entries()) {
      const res = await http('POST', `${replicas[i % 3]!.url}/v1/tasks`, {
        token: tokens.orchestrator,
        body: { agent: { subject }, roles: ['demo'], ttl_seconds: 3600 },
      });
      expect(res.status, res.text).toBe(201);
      taskOf.set(subject, res.json.task.id);
    }

    // Phase 1: LEASES_PER_TASK leases on every task, round-robin over the replicas.
    const phase1 = performance.now();
    await Promise.all(
      AGENTS.map(async (subject) => {
        for (let got = 0, tries = 0; got < LEASES_PER_TASK && tries < LEASES_PER_TASK * 2; tries++) if ((await issue(subject)) === 201) got++;
      }),
    );
    const phase1Leases = received.length;
    expect(phase1Leases).toBe(AGENTS.length * LEASES_PER_TASK);
    console.log(`[replicas] phase 1: ${phase1Leases} leases in ${((performance.now() - phase1) / 1000).toFixed(1)} s, per replica ${JSON.stringify(Object.fromEntries(perReplica))}`);

    // Phase 2: issuance on every task goes on while the tasks are completed through different replicas.
    let stop = false;
    const loops = Promise.all(
      Array.from({ length: LOOPS }, async (_, i) => {
        const subject = AGENTS[i % AGENTS.length]!;
        for (let n = 0; n < MAX_REQUESTS_PER_LOOP && !stop; n++) if ((await issue(subject)) === 0) await sleep(10);
      }),
    );
    loops.catch(() => {}); // awaited below
    const complete = async (replica: Broker, subject: string) => {
      const res = await http('POST', `${replica.url}/v1/tasks/${taskOf.get(subject)}/complete`, { token: tokens.orchestrator, body: { outcome: 'success' } });
      expect(res.status, res.text).toBe(202);
      return res.json.revoking as number;
    };
    let killedHolding = 0;
    let victimRevokedBeforeDeath = 0;
    try {
      await sleep(300);
      // agent-1 through one survivor, agent-2 through the other; agent-3 and agent-4 through the victim,
      // which is nudged to sweep them and is SIGKILLed as soon as it holds claims.
      const revoking: number[] = await Promise.all([complete(a, 'agent-1'), complete(b, 'agent-2')]);
      revoking.push(...(await Promise.all([complete(victim, 'agent-3'), complete(victim, 'agent-4')])));
      const watchStarted = performance.now();
      for (;;) {
        const [row] = await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where claimed_by = ${victim.instanceId}`;
        if (row!.n > 0 || performance.now() - watchStarted > 2_000) break;
      }
      live.delete(victim);
      await killBroker(victim);
      const [held] = await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where claimed_by = ${victim.instanceId}`;
      killedHolding = held!.n;
      const [done] = await pg.sql<{ n: number }[]>`
        select count(*)::int as n from audit_events where action = 'lease.revoked' and actor = 'system:sweeper'`;
      victimRevokedBeforeDeath = done!.n;
      console.log(
        `[replicas] completions moved ${JSON.stringify(revoking)} leases to revoking; victim pid ${victim.pid} SIGKILLed ` +
          `${(performance.now() - watchStarted).toFixed(0)} ms after its completions, holding ${killedHolding} claims ` +
          `(${victimRevokedBeforeDeath} leases revoked by any replica so far)`,
      );
      // More load on the survivors, then the last tasks complete through them.
      await sleep(500);
      await Promise.all([complete(b, 'agent-5'), complete(a, 'agent-6')]);
      await sleep(300);
    } finally {
      stop = true;
    }
    await within(loops, 30_000, 'the load loops finishing');
    const errorCount = [...errors.values()].reduce((x, y) => x + y, 0);
    console.log(
      `[replicas] ${received.length} x 201 in all (${received.length - phase1Leases} during completion); ` +
        `statuses ${JSON.stringify(Object.fromEntries(statuses))}; ${errorCount} connection errors ${JSON.stringify(Object.fromEntries(errors))}`,
    );
    // Only the killed replica may cut a request off.
    expect([...errors.keys()].filter((k) => !k.endsWith('(killed replica)'))).toEqual([]);
    // During completion an issuance may be refused because its task closed; nothing else.
    expect([...statuses.keys()].filter((s) => s !== '201' && s !== '409 task_not_open')).toEqual([]);

    // Every credential a client received has its lease row.
    const rows = await pg.sql<{ id: string; task_id: string; credential_ref: string }[]>`select id::text, task_id, credential_ref from leases`;
    const byId = new Map(rows.map((r) => [r.id, r]));
    const missing = received.filter((r) => {
      const row = byId.get(r.leaseId);
      return row === undefined || row.task_id !== r.task || row.credential_ref !== jtiOf(r.token);
    });
    expect(missing.map((r) => r.leaseId), 'credentials received without a matching lease row').toEqual([]);

    // The survivors' sweepers finish everything but what the dead replica still holds.
    const open = () => pg.sql<{ id: string; status: string; claimed_by: string | null; claim_until: Date | null }[]>`
      select id::text, status, claimed_by, claim_until from leases where status not in ('revoked', 'expired')`;
    await until(SETTLE_MS, async () => (await open()).every((l) => l.claimed_by === victim.instanceId));
    const left = await open();
    console.log(`[replicas] after the survivors' sweeps: ${left.length} leases not yet revoked, all claimed by the dead replica: ${left.every((l) => l.claimed_by === victim.instanceId)}`);
    expect(
      left.filter((l) => l.claimed_by !== victim.instanceId).map((l) => `${l.id} ${l.status} ${l.claimed_by}`),
      'leases left unrevoked that the dead replica does not hold',
    ).toEqual([]);
    for (const l of left) expect(l.status, `lease ${l.id} held by the dead replica`).toBe('revoking');

    // The dead replica's claim_timeout (60 s) passes: its claims run out and the survivors take them over.
    const expired = await pg.sql`update leases set claim_until = now() - interval '1 second' where claimed_by = ${victim.instanceId}`;
    expect(expired.count).toBe(left.length);
    const takeoverStarted = performance.now();
    const settled = await until(SETTLE_MS, async () => (await open()).length === 0);
    console.log(`[replicas] ${left.length} leases taken over from the dead replica; all revoked: ${settled} after ${((performance.now() - takeoverStarted) / 1000).toFixed(1)} s`);
    expect((await open()).map((l) => `${l.id} ${l.status} ${l.claimed_by}`), 'leases never revoked').toEqual([]);

    // Every lease ended revoked, with exactly one revocation event, none with a claim left on it.
    const final = await pg.sql<{ status: string; n: number }[]>`select status, count(*)::int as n from leases group by status`;
    console.log(`[replicas] final lease states: ${JSON.stringify(Object.fromEntries(final.map((r) => [r.status, r.n])))}`);
    expect(final.map((r) => r.status)).toEqual(['revoked']);
    const claimed = await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where claimed_by is not null or ended_at is null`;
    expect(claimed[0]!.n).toBe(0);
    const events = await pg.sql<{ target: string; revoked: number; expired: number }[]>`
      select target,
             count(*) filter (where action = 'lease.revoked')::int as revoked,
             count(*) filter (where action = 'lease.expired')::int as expired
        from audit_events where action in ('lease.revoked', 'lease.expired') group by target`;
    const eventsOf = new Map(events.map((e) => [e.target, e]));
    const notOnce = rows
      .map((r) => ({ id: r.id, e: eventsOf.get(`lease:${r.id}`) }))
      .filter(({ e }) => !e || e.revoked !== 1 || e.expired !== 0)
      .map(({ id, e }) => `${id}: revoked ${e?.revoked ?? 0}, expired ${e?.expired ?? 0}`);
    expect(notOnce.slice(0, 20), 'leases without exactly one lease.revoked event').toEqual([]);
    expect(events.length, 'no revocation event for a lease that does not exist').toBe(rows.length);
    console.log(`[replicas] ${rows.length} leases, ${rows.length} lease.revoked events, one each`);

    // The survivors drain and exit 0; the audit chain is intact.
    for (const r of [a, b]) r.child.kill('SIGTERM');
    for (const r of [a, b]) {
      const exit = await within(r.exited, 10_000, `replica ${r.pid} exiting after SIGTERM`);
      expect(exit, r.stderr().slice(-2000)).toEqual({ code: 0, signal: null });
    }
    const verify = await runCli(['audit', 'verify'], env);
    console.log(`[replicas] audit verify: ${verify.stdout.trim()}`);
    expect(verify.code, `stdout: ${verify.stdout}\nstderr: ${verify.stderr}`).toBe(0);
  });
});
