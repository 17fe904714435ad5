/**
 * npm run bench:cedar: what one Cedar decision costs on this machine, with no
 * HTTP or database in the way: the bench's roles compiled from YAML alone,
 * then with 200 operator policies (bench/cedar-policies.ts); each asked afresh
 * (a new agent every time: Cedar evaluates) and asked again (the same request
 * in the same minute: the remembered answer).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RoleSchema } from '../src/config/schema.js';
import type { Task } from '../src/db/schema.js';
import { readPolicyFiles } from '../src/policy/cedar/files.js';
import { createPolicy } from '../src/policy/decide.js';
import { operatorPolicies } from './cedar-policies.js';

const RUNS = Number(process.env.BENCH_CEDAR_RUNS ?? 5000);
const role = RoleSchema.parse({ name: 'bench', backend: 'local', ttl: 900, max_ttl: 3600, allow: [{ issuer: 'bench', subject_pattern: 'agent-.*' }] });
const now = new Date();
const task = { id: 't', agentSubject: 'agent-0', agentIssuer: 'bench', roles: ['bench'], labels: { environment: 'staging' }, status: 'open', createdBy: 'o', createdAt: now, deadline: new Date(now.getTime() + 3600_000) } as unknown as Task;
const dir = mkdtempSync(join(tmpdir(), 'bench-cedar-'));
writeFileSync(join(dir, 'ops.cedar'), operatorPolicies(200));

console.log(`tasklease bench:cedar: ${RUNS} decisions each`);
for (const [label, files] of [['YAML only (1 policy)', []], ['+ 200 operator policies', ['ops.cedar']]] as const) {
  const policy = createPolicy([role], undefined, { requireRegistration: false, cedar: readPolicyFiles([...files], dir) });
  const ask = (i: number) => {
    const subject = `agent-${i}`;
    const d = policy.decide({ identity: { issuer: 'bench', subject, claims: { sub: subject, iss: 'https://issuer', aud: 'a', iat: 1, exp: 2 }, tokenSha256: 'h', expiresAt: now }, task: { ...task, agentSubject: subject }, roleName: 'bench', requestedTtl: undefined, now });
    if (!d.allow) throw new Error(`refused: ${d.reason}`);
  };
  for (let i = 0; i < 500; i++) ask(1_000_000 + i); // warm-up
  let t = performance.now();
  for (let i = 0; i < RUNS; i++) ask(i);
  const fresh = ((performance.now() - t) * 1000) / RUNS;
  t = performance.now();
  for (let i = 0; i < RUNS; i++) ask(i % 1000);
  const again = ((performance.now() - t) * 1000) / RUNS;
  console.log(`${label.padEnd(26)} asked afresh ${fresh.toFixed(0).padStart(5)} us a decision; asked again ${again.toFixed(1).padStart(5)} us`);
}
