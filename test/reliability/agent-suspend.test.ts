// Two replicas on one PostgreSQL database; agent-x asks for credentials
// through both, 24 requests in flight, while agent-y asks beside it. agent-x
// is suspended through replica A in the middle of that load. The suspension's
// commit moves the registry's generation, which every issuance commit reads
// FOR SHARE (leases/record.ts, writer.ts), so:
// - every credential.issued of agent-x precedes agent.suspended in the audit
//   chain, and the suspension revoked it; none is committed after;
// - every request of agent-x sent after the suspension's answer, on either
//   replica, is refused with agent_suspended (on B before it hears of the
//   change too: its commit decides again);
// - its leases all end revoked (agent_suspended), its renewal is refused, and
//   agent-y never notices. Resumed, agent-x gets credentials again.
import { Agent } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { devTokens, http, runCli, sleep, startBroker, until, within, useChildBrokers, type Broker } from '../support/child-broker.js';

/** `until`, checking every 100 ms: the load moves fast. */
const poll = (ms: number, check: () => Promise<boolean>) => until(ms, check, 100);

const X_LOOPS = 24;
const Y_LOOPS = 4;
/** agent-x's credentials before the suspension, so it lands in a running load. */
const ISSUED_BEFORE = 300;
/** Requests of agent-x sent after the answer, per replica, and agent-y's credentials after it, before the load stops. */
const AFTER_PER_REPLICA = 100;
const Y_AFTER = 50;

interface Sent {
  subject: string;
  replica: 'A' | 'B';
  sentAt: number;
  answeredAt: number;
  status: number;
  code: string | undefined;
  leaseId: string | undefined;
}

describe('suspending an agent on two replicas under issuance load', () => {
  const child = useChildBrokers('suspend');
  const pool = new Agent({ keepAlive: true, maxSockets: 64 });
  afterAll(() => pool.destroy());


  it('commits no credential of the agent after its suspension, on either replica, and leaves the others alone', { timeout: 60_000 }, async () => {
    const { pg, env } = child;
    // The first replica creates the keys under the shared data dir; the second starts on them.
    const a = await startBroker(env);
    const b = await startBroker(env);
    const replicas: Record<'A' | 'B', Broker> = { A: a, B: b };
    const tokens = await devTokens(env, ['orchestrator', 'admin', 'agent-x', 'agent-y']);

    // Opening the tasks registers both agents (dev mode), before the load: no registry change but the suspension runs under it.
    const taskOf: Record<string, string> = {};
    for (const [subject, via] of [['agent-x', a], ['agent-y', b]] as const) {
      const res = await http('POST', `${via.url}/v1/tasks`, { token: tokens.orchestrator, body: { agent: { subject }, roles: ['demo'], ttl_seconds: 3600 } });
      expect(res.status, res.text).toBe(201);
      taskOf[subject] = res.json.task.id;
    }

    const sent: Sent[] = [];
    const errors: string[] = [];
    /** One request; on the keep-alive pool while the load runs, on a connection of its own after (an idle pooled one may be closing). */
    const ask = async (subject: string, replica: 'A' | 'B', pooled = true): Promise<Sent | undefined> => {
      const sentAt = performance.now();
      try {
        const res = await http('POST', `${replicas[replica].url}/v1/credentials`, { token: tokens[subject], body: { task: taskOf[subject], role: 'demo' }, ...(pooled ? { agent: pool } : {}), timeoutMs: 10_000 });
        const one = { subject, replica, sentAt, answeredAt: performance.now(), status: res.status, code: res.json?.code as string | undefined, leaseId: res.json?.lease?.id as string | undefined };
        sent.push(one);
        return one;
      } catch (err) {
        errors.push(`${subject} via ${replica}: ${(err as Error).message}`);
        await sleep(10);
        return undefined;
      }
    };

    let stop = false;
    const loops = Promise.all([
      ...Array.from({ length: X_LOOPS }, async (_, i) => {
        while (!stop) await ask('agent-x', i % 2 === 0 ? 'A' : 'B');
      }),
      ...Array.from({ length: Y_LOOPS }, async (_, i) => {
        while (!stop) await ask('agent-y', i % 2 === 0 ? 'A' : 'B');
      }),
    ]);
    loops.catch(() => {}); // awaited below

    let suspended!: Awaited<ReturnType<typeof http>>;
    let suspendAnswered!: number;
    const count = (f: (s: Sent) => boolean) => sent.filter(f).length;
    try {
      await poll(30_000, async () => count((s) => s.subject === 'agent-x' && s.status === 201) >= ISSUED_BEFORE);
      const suspendSent = performance.now();
      suspended = await http('POST', `${a.url}/v1/agents/agent-x/suspend`, { token: tokens.admin, body: { reason: 'reliability test' } });
      suspendAnswered = performance.now();
      console.log(`[agent-suspend] suspend answered ${suspended.status} in ${(suspendAnswered - suspendSent).toFixed(1)} ms, ${suspended.json?.revoking} leases moved to revoking`);
      const after = (s: Sent) => s.sentAt > suspendAnswered;
      await poll(30_000, async () =>
        (['A', 'B'] as const).every((r) => count((s) => s.subject === 'agent-x' && s.replica === r && after(s)) >= AFTER_PER_REPLICA) &&
        count((s) => s.subject === 'agent-y' && s.status === 201 && after(s)) >= Y_AFTER,
      );
    } finally {
      stop = true;
    }
    await within(loops, 20_000, 'the load loops finishing');
    expect(suspended.status, suspended.text).toBe(200);
    expect(errors, 'connection errors').toEqual([]);

    const xs = sent.filter((s) => s.subject === 'agent-x');
    const ys = sent.filter((s) => s.subject === 'agent-y');
    const statusOf = (s: Sent) => `${s.status}${s.status === 201 ? '' : ` ${s.code}`}`;
    const tally = (list: Sent[]) => list.reduce<Record<string, number>>((m, s) => ((m[statusOf(s)] = (m[statusOf(s)] ?? 0) + 1), m), {});
    const lateX = xs.filter((s) => s.status === 201 && s.answeredAt > suspendAnswered);
    console.log(
      `[agent-suspend] agent-x ${JSON.stringify(tally(xs))}, ${lateX.length} credentials delivered after the suspend answer ` +
        `(last ${lateX.length ? (Math.max(...lateX.map((s) => s.answeredAt)) - suspendAnswered).toFixed(1) : '-'} ms after it); agent-y ${JSON.stringify(tally(ys))}`,
    );

    // agent-x: credentials, or the suspension's refusal; after the answer, only the refusal, on both replicas.
    expect(Object.keys(tally(xs)).filter((k) => k !== '201' && k !== '403 agent_suspended')).toEqual([]);
    for (const r of ['A', 'B'] as const) {
      const afterOnR = xs.filter((s) => s.replica === r && s.sentAt > suspendAnswered);
      expect(afterOnR.length, `requests of agent-x sent via ${r} after the answer`).toBeGreaterThanOrEqual(AFTER_PER_REPLICA);
      expect(tally(afterOnR), `what agent-x got via ${r} after the answer`).toEqual({ '403 agent_suspended': afterOnR.length });
    }
    // agent-y: nothing but credentials, throughout and after.
    expect(tally(ys)).toEqual({ '201': ys.length });
    expect(ys.filter((s) => s.sentAt > suspendAnswered).length).toBeGreaterThanOrEqual(Y_AFTER);

    // The audit chain: every credential.issued of agent-x precedes agent.suspended, and is the 201s, one for one.
    const marks = await pg.sql<{ seq: number }[]>`select seq::int from audit_events where action = 'agent.suspended' and details->>'agent' = 'agent-x'`;
    expect(marks.length).toBe(1);
    const suspendedSeq = marks[0]!.seq;
    const issued = await pg.sql<{ seq: number; target: string }[]>`
      select seq::int, target from audit_events where action = 'credential.issued' and details->>'agent' = 'agent-x'`;
    expect(issued.filter((e) => e.seq > suspendedSeq).map((e) => `${e.target} seq ${e.seq}`), `credential.issued after agent.suspended (seq ${suspendedSeq})`).toEqual([]);
    const received = xs.filter((s) => s.status === 201).map((s) => `lease:${s.leaseId}`);
    expect(new Set(issued.map((e) => e.target))).toEqual(new Set(received));
    // Every other lease of agent-x was refused at its commit, after the suspension, and recorded to be revoked.
    const refused = await pg.sql<{ seq: number; target: string; code: string }[]>`
      select seq::int, target, details->>'code' as code from audit_events where action = 'credential.denied' and target like 'lease:%' and details->>'agent' = 'agent-x'`;
    expect(refused.filter((e) => e.seq < suspendedSeq || e.code !== 'agent_suspended').map((e) => `${e.target} ${e.code} seq ${e.seq}`)).toEqual([]);
    console.log(`[agent-suspend] audit: ${issued.length} credential.issued of agent-x before agent.suspended (seq ${suspendedSeq}), none after; ${refused.length} refused at commit after it`);

    // Every lease of agent-x ends revoked for the suspension (the sweepers, nudged); none stays active.
    const unfinished = async () =>
      (await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where agent = 'agent-x' and status <> 'revoked'`)[0]!.n;
    expect(await poll(30_000, async () => (await unfinished()) === 0), 'agent-x leases left unrevoked').toBe(true);
    const leases = await pg.sql<{ id: string; status: string; reason: string | null }[]>`select id::text, status, reason from leases where agent = 'agent-x'`;
    expect(leases.length).toBe(issued.length + refused.length);
    // Revoked by the suspension, or refused at its commit by the registry's second decision (never released).
    expect(leases.filter((l) => l.status !== 'revoked' || !['agent_suspended', 'registry_changed'].includes(l.reason ?? '')).map((l) => `${l.id} ${l.status} ${l.reason}`)).toEqual([]);
    expect(leases.filter((l) => received.includes(`lease:${l.id}`)).length).toBe(received.length);
    expect(suspended.json.revoking).toBeLessThanOrEqual(issued.length);

    // A renewal is refused: through A at once; through B once it has the registry A changed (a stale B finds the lease ended).
    const leaseId = xs.find((s) => s.status === 201)!.leaseId!;
    const renew = (via: Broker) => http('POST', `${via.url}/v1/leases/${leaseId}/renew`, { token: tokens['agent-x'], body: {} });
    const viaA = await renew(a);
    expect(`${viaA.status} ${viaA.json?.code}`).toBe('403 agent_suspended');
    const seenViaB: string[] = [];
    await poll(10_000, async () => {
      const res = await renew(b);
      seenViaB.push(`${res.status} ${res.json?.code}`);
      return res.status === 403;
    });
    expect(seenViaB.at(-1)).toBe('403 agent_suspended');
    expect(seenViaB.filter((s) => s !== '403 agent_suspended' && s !== '409 lease_not_active')).toEqual([]);

    // Resumed through B: agent-x gets credentials there at once, and through A once A has heard of it.
    const resumed = await http('POST', `${b.url}/v1/agents/agent-x/resume`, { token: tokens.admin, body: { reason: 'reliability test done' } });
    expect(resumed.status, resumed.text).toBe(200);
    const first = await ask('agent-x', 'B', false);
    expect(first && statusOf(first)).toBe('201');
    const seenViaA: string[] = [];
    await poll(10_000, async () => {
      const res = await ask('agent-x', 'A', false);
      seenViaA.push(res ? statusOf(res) : 'error');
      return res?.status === 201;
    });
    expect(seenViaA.at(-1)).toBe('201');
    expect(seenViaA.filter((s) => s !== '201' && s !== '403 agent_suspended')).toEqual([]);
    const active = await pg.sql<{ id: string }[]>`select id::text from leases where agent = 'agent-x' and status = 'active'`;
    expect(active.map((l) => l.id).sort()).toEqual([first!.leaseId, sent.at(-1)!.leaseId].sort());

    // Both replicas drain and exit 0; the audit chain is intact.
    for (const r of [a, b]) r.child.kill('SIGTERM');
    for (const r of [a, b]) {
      const exit = await within(r.exited, 10_000, `replica ${r.pid} exiting after SIGTERM`);
      expect(exit, r.stderr().slice(-2000)).toEqual({ code: 0, signal: null });
    }
    const verify = await runCli(['audit', 'verify'], env);
    expect(verify.code, `stdout: ${verify.stdout}\nstderr: ${verify.stderr}`).toBe(0);
  });
});
