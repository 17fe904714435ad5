// Graceful shutdown: SIGTERM with issuance requests in flight and the sweeper
// busy. Every connection the server accepted gets its whole response, requests
// after the close are refused, the process exits 0, and it leaves no lease
// claimed behind it.
//
// The broker child preloads accept-log.mjs, which logs the peer port of every
// connection the process accepts. A connection the kernel completed but the
// process never accepted (still in the listen backlog when the listener
// closes) is reset by the kernel: the server never saw that request, so it is
// a refusal, counted and printed but not a failure.
import { Agent } from 'node:http';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  devTokens,
  http,
  HttpError,
  jtiOf,
  runCli,
  sleep,
  startBroker,
  within,
  type HttpResult,
  useChildBrokers,
} from '../support/child-broker.js';

const IN_FLIGHT = 20;
const SWEEP_LEASES = 400;
const EXIT_MS = 10_000;

const ACCEPT_LOG = fileURLToPath(new URL('./accept-log.mjs', import.meta.url));

type Outcome = { id: string; phase: 'in-flight' | 'after-sigterm'; localPort?: number; result?: HttpResult; error?: HttpError };

describe('SIGTERM with requests in flight', () => {
  const child = useChildBrokers('shutdown');

  it('answers every accepted request in full, exits 0 and leaves no claim behind', { timeout: 120_000 }, async () => {
    const { pg, env } = child;
    const broker = await startBroker({ ...env, NODE_OPTIONS: `--import ${ACCEPT_LOG}` });
    const accepted = () => new Set([...broker.stderr().matchAll(/^ACCEPTED (\d+)$/gm)].map((m) => Number(m[1])));
    const tokens = await devTokens(env, ['orchestrator', 'agent-1', 'agent-2']);
    const run = Date.now().toString(36);
    const [sweepTask, issueTask] = (await Promise.all(
      ['agent-1', 'agent-2'].map(async (subject) => {
        const res = await http('POST', `${broker.url}/v1/tasks`, { token: tokens.orchestrator, body: { agent: { subject }, roles: ['demo'], ttl_seconds: 3600 } });
        expect(res.status, res.text).toBe(201);
        return res.json.task.id as string;
      }),
    )) as [string, string];

    // Leases for the sweeper to be busy with when SIGTERM arrives.
    const warm = new Agent({ keepAlive: true, maxSockets: 8 });
    let issued = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (issued < SWEEP_LEASES) {
          issued++;
          const res = await http('POST', `${broker.url}/v1/credentials`, { token: tokens['agent-1'], body: { task: sweepTask, role: 'demo' }, agent: warm });
          expect(res.status, res.text).toBe(201);
        }
      }),
    );
    warm.destroy();

    const outcomes: Outcome[] = [];
    const send = (id: string, phase: Outcome['phase']) => {
      const outcome: Outcome = { id, phase };
      outcomes.push(outcome);
      const options = { token: tokens['agent-2'], body: { task: issueTask, role: 'demo' }, requestId: id, timeoutMs: 15_000, onConnect: (port: number | undefined) => (outcome.localPort = port) };
      return http('POST', `${broker.url}/v1/credentials`, options).then(
        (result) => void (outcome.result = result),
        (error: unknown) => {
          if (!(error instanceof HttpError)) throw error;
          outcome.error = error;
        },
      );
    };

    // The sweeper starts on SWEEP_LEASES revocations; IN_FLIGHT issuances go out, each on its own connection.
    const completed = await http('POST', `${broker.url}/v1/tasks/${sweepTask}/complete`, { token: tokens.orchestrator, body: { outcome: 'success' } });
    expect(completed.status, completed.text).toBe(202);
    const inFlight = Array.from({ length: IN_FLIGHT }, (_, i) => send(`inflight-${run}-${i}`, 'in-flight'));
    // SIGTERM once the process has accepted every one of them.
    const acceptWait = performance.now();
    const isAccepted = (o: Outcome, set: Set<number>) => o.localPort !== undefined && set.has(o.localPort);
    while (performance.now() - acceptWait < 5_000) {
      const set = accepted();
      if (outcomes.every((o) => isAccepted(o, set))) break;
      await sleep(1);
    }
    const answeredBeforeSigterm = outcomes.filter((o) => o.result || o.error).length;
    expect(outcomes.filter((o) => !isAccepted(o, accepted())).map((o) => o.id), 'in-flight requests the server had not accepted after 5 s').toEqual([]);
    const [claimedAtSigterm] = await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where claimed_by is not null`;
    const sigtermAt = performance.now();
    expect(broker.child.kill('SIGTERM')).toBe(true);

    // Requests keep coming after the signal, until the process is gone.
    let exited = false;
    void broker.exited.then(() => (exited = true));
    const late: Promise<void>[] = [];
    for (let i = 0; !exited && performance.now() - sigtermAt < EXIT_MS; i++) {
      late.push(send(`late-${run}-${i}`, 'after-sigterm'));
      await sleep(5);
    }
    const exit = await within(broker.exited, EXIT_MS, 'the broker exiting after SIGTERM');
    const exitMs = performance.now() - sigtermAt;
    await within(Promise.all([...inFlight, ...late]), 20_000, 'every request settling');

    // What the server says it answered: its request log, by the id each request sent (logged beside the server's own).
    const answered = new Map<string, number>();
    for (const line of broker.stdout().split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const entry = JSON.parse(line) as { msg?: string; client_request_id?: string; status?: number };
        if (entry.msg === 'request' && entry.client_request_id) answered.set(entry.client_request_id, entry.status ?? 0);
      } catch {
        // not a log line
      }
    }

    const acceptedPorts = accepted();
    const wasAccepted = (o: Outcome) => o.localPort !== undefined && acceptedPorts.has(o.localPort);
    const summary = (phase: Outcome['phase']) => {
      const counts = new Map<string, number>();
      for (const o of outcomes.filter((x) => x.phase === phase)) {
        const key = o.result
          ? `${o.result.status}`
          : `${o.error!.code}${o.error!.midResponse ? ' mid-response' : ''}${o.error!.connected ? (wasAccepted(o) ? ' after accept' : ' in the backlog') : ''}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return JSON.stringify(Object.fromEntries(counts));
    };
    console.log(
      `[shutdown] exit ${JSON.stringify(exit)} ${exitMs.toFixed(0)} ms after SIGTERM; ${claimedAtSigterm!.n} leases claimed by the sweeper at SIGTERM; ` +
        `in flight: ${summary('in-flight')} (${answeredBeforeSigterm} answered before SIGTERM); after SIGTERM (${late.length} sent): ${summary('after-sigterm')}`,
    );

    expect(exit, broker.stderr().slice(-2000)).toEqual({ code: 0, signal: null });
    expect(broker.stdout()).toContain('"msg":"stopped"');

    // No response was cut off midway, no connection the server accepted went unanswered, and no request it handled.
    const cut = outcomes.filter((o) => o.error?.midResponse).map((o) => `${o.id}: ${o.error!.message}`);
    expect(cut, 'responses reset midway').toEqual([]);
    const acceptedButLost = outcomes.filter((o) => o.error && wasAccepted(o)).map((o) => `${o.id}: ${o.error!.code} ${o.error!.message}`);
    expect(acceptedButLost, 'connections the server accepted that got no response').toEqual([]);
    const handledButLost = outcomes.filter((o) => o.error && answered.has(o.id)).map((o) => `${o.id} (server logged ${answered.get(o.id)}): ${o.error!.message}`);
    expect(handledButLost, 'requests the server handled whose response never arrived').toEqual([]);
    // The requests in flight at SIGTERM were all accepted before it, and are all answered.
    const inFlightFailed = outcomes.filter((o) => o.phase === 'in-flight' && !o.result).map((o) => `${o.id}: ${o.error!.code} ${o.error!.message}`);
    expect(inFlightFailed, 'in-flight requests without a response').toEqual([]);
    for (const o of outcomes.filter((x) => x.phase === 'in-flight')) expect(o.result!.status, o.result!.text).toBe(201);
    // After SIGTERM a request is answered in full, or refused: at connect, or reset by the kernel before the process accepted it.
    const unclean = outcomes
      // A reset during the handshake (never connected) is a refusal too: the listener was closing.
      .filter((o) => o.phase === 'after-sigterm' && o.error && o.error.code !== 'ECONNREFUSED' && !(o.error.code === 'ECONNRESET' && !wasAccepted(o)))
      .map((o) => `${o.id}: ${o.error!.code} connected=${o.error!.connected} ${o.error!.message}`);
    expect(unclean, 'requests after SIGTERM neither answered nor refused').toEqual([]);
    for (const o of outcomes.filter((x) => x.result)) {
      expect([201, 503], `${o.id}: ${o.result!.text}`).toContain(o.result!.status);
      expect(answered.get(o.id), `${o.id} answered but not in the server's request log`).toBe(o.result!.status);
    }

    // Every credential handed out has its lease row.
    const delivered = outcomes.filter((o) => o.result?.status === 201).map((o) => o.result!.json as { lease: { id: string }; credentials: { token: string } });
    const rows = await pg.sql<{ id: string; credential_ref: string }[]>`select id::text, credential_ref from leases where task_id = ${issueTask}`;
    const byId = new Map(rows.map((r) => [r.id, r.credential_ref]));
    expect(delivered.filter((d) => byId.get(d.lease.id) !== jtiOf(d.credentials.token)).map((d) => d.lease.id), 'credentials without a lease row').toEqual([]);

    // It left no lease claimed: what it had not revoked is unclaimed and due for the next sweeper.
    const claimed = await pg.sql<{ id: string; status: string; claimed_by: string }[]>`select id::text, status, claimed_by from leases where claimed_by is not null`;
    const states = await pg.sql<{ status: string; n: number }[]>`select status, count(*)::int as n from leases where task_id = ${sweepTask} group by status`;
    console.log(`[shutdown] ${delivered.length} credentials delivered during shutdown; sweep task leases after exit: ${JSON.stringify(Object.fromEntries(states.map((s) => [s.status, s.n])))}`);
    expect(claimed, 'leases still claimed after a graceful exit').toEqual([]);

    // A later sweep finishes the job; the audit chain is intact.
    const sweep = await runCli(['sweep'], env);
    expect(sweep.code, sweep.stderr).toBe(0);
    const [left] = await pg.sql<{ n: number }[]>`select count(*)::int as n from leases where task_id = ${sweepTask} and status <> 'revoked'`;
    expect(left!.n).toBe(0);
    const verify = await runCli(['audit', 'verify'], env);
    expect(verify.code, `stdout: ${verify.stdout}\nstderr: ${verify.stderr}`).toBe(0);
  });

  it('writes the count of repeated refusals before it exits', { timeout: 60_000 }, async () => {
    const { pg, env } = child;
    const broker = await startBroker(env);
    const tokens = await devTokens(env, ['intruder-sigterm']);
    const task = `shutdown-${Date.now().toString(36)}-missing`;
    for (let i = 0; i < 25; i++) {
      const res = await http('POST', `${broker.url}/v1/credentials`, { token: tokens['intruder-sigterm'], body: { task, role: 'demo' } });
      // Dev mode requires registration, and an intruder is no agent: refused before its made-up task is looked up.
      expect(res.status, res.text).toBe(403);
      expect(res.json.code).toBe('agent_not_registered');
    }
    // The first refusal names the task; the window's count names the identity, whatever task each repeat named.
    const denied = () => pg.sql<{ details: { code: string; count?: number } }[]>`select details from audit_events where actor = 'dev/intruder-sigterm' and action = 'credential.denied' order by seq`;
    expect((await denied()).map((r) => r.details.count)).toEqual([undefined]);
    expect(broker.child.kill('SIGTERM')).toBe(true);
    expect(await within(broker.exited, EXIT_MS, 'the broker exiting after SIGTERM')).toEqual({ code: 0, signal: null });
    expect((await denied()).map((r) => [r.details.code, r.details.count])).toEqual([
      ['agent_not_registered', undefined],
      ['agent_not_registered', 24],
    ]);
    const verify = await runCli(['audit', 'verify'], env);
    expect(verify.code, verify.stdout).toBe(0);
  });
});
