import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import type { benchIssuer } from './setup.js';

type Issuer = Awaited<ReturnType<typeof benchIssuer>>;

/** POSTs `body` with `token`; anything but `expect` throws. */
export async function call(url: string, path: string, token: string, body: unknown, expect: number): Promise<unknown> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== expect) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Opens a task and answers the id the broker gave it. */
async function openTask(url: string, orchestrator: string, body: unknown): Promise<string> {
  return ((await call(url, '/v1/tasks', orchestrator, body, 201)) as { task: { id: string } }).task.id;
}

/** Opens one task per agent (agent-<prefix>-<i>) and signs each agent's token once. */
export async function openAgentTasks(url: string, issuer: Issuer, count: number, prefix: string) {
  const orchestrator = await issuer.token('orchestrator');
  const agents: { token: string; task: string }[] = [];
  for (let start = 0; start < count; start += 32) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(32, count - start) }, async (_, j) => {
        const subject = `agent-${prefix}-${start + j}`;
        const task = await openTask(url, orchestrator, { agent: { subject }, roles: ['bench', 'slow'], ttl_seconds: 7200 });
        return { token: await issuer.token(subject), task };
      }),
    );
    agents.push(...batch);
  }
  return agents;
}

/**
 * Scenarios 3 and 3s, run beside the issuance load: open a task, take 10
 * credentials for it, complete it, and time until `settled` says the 10 are
 * done with (revoked in the database; verified by a receiver of SETs).
 */
export async function completionProbe(url: string, issuer: Issuer, running: () => boolean, settled: (task: string, leases: string[]) => Promise<boolean> | boolean): Promise<number[]> {
  const orchestrator = await issuer.token('orchestrator');
  const latencies: number[] = [];
  for (let k = 0; running(); k++) {
    const subject = `agent-rev-${k}-${Date.now().toString(36)}`;
    const task = await openTask(url, orchestrator, { agent: { subject }, roles: ['bench'], ttl_seconds: 3600 });
    const token = await issuer.token(subject);
    const issued = await Promise.all(Array.from({ length: 10 }, () => call(url, '/v1/credentials', token, { task, role: 'bench' }, 201)));
    const leases = issued.map((r) => (r as { lease: { id: string } }).lease.id);
    const started = performance.now();
    await call(url, `/v1/tasks/${task}/complete`, orchestrator, { outcome: 'success' }, 202);
    while (!(await settled(task, leases))) await sleep(2);
    latencies.push(performance.now() - started);
    await sleep(100);
  }
  return latencies;
}

/** Scenario 3: until the database shows all 10 revoked. */
export async function revocationProbe(url: string, databaseUrl: string, issuer: Issuer, running: () => boolean): Promise<number[]> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    return await completionProbe(url, issuer, running, async (task) => {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from leases where task_id = ${task} and status <> 'revoked'`;
      return row!.n === 0;
    });
  } finally {
    await sql.end();
  }
}
