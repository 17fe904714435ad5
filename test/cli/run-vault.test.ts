// `tasklease run` with Vault roles, against a real broker whose vault backend talks to the
// protocol-faithful Vault fake: token mode reaches the child as VAULT_TOKEN (which works against
// Vault), a dynamic secret's field by --env, and both are revoked in Vault once the child exits.
// Run on PGlite and on PostgreSQL.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { runProgram } from '../../src/cli/program.js';
import type { TestBroker } from '../support/broker.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import type { VaultFake } from '../support/vault-fake.js';
import { startVaultBroker } from '../support/vault-broker.js';
import { serveBroker } from '../client/support.js';

const NODE = process.execPath;

/** A child that looks its VAULT_TOKEN up at Vault and records that, and PGPASSWORD, in `out` (argv[1]). */
const vaultChild = `
import { writeFileSync } from 'node:fs';
const token = process.env.VAULT_TOKEN;
let lookup = null;
if (token) {
  const res = await fetch(process.env.VAULT_ADDR + '/v1/auth/token/lookup-self', { headers: { 'x-vault-token': token } });
  lookup = { status: res.status, body: await res.json() };
}
writeFileSync(process.argv[1], JSON.stringify({ token: token ?? null, lookup, password: process.env.PGPASSWORD ?? null, identity: process.env.TASKLEASE_TOKEN ?? null }));`;

describe.each(DRIVERS)('tasklease run with Vault roles on %s', (driver) => {
  let database: TestDatabase;
  let vault: VaultFake;
  let t: TestBroker;
  let http: Awaited<ReturnType<typeof serveBroker>>;
  const dir = mkdtempSync(join(tmpdir(), 'tl-run-vault-'));
  let n = 0;
  const outFile = () => join(dir, `out-${n++}.json`);

  beforeAll(async () => {
    // Real time: the wrapper times renewals by the broker's Date header.
    const clock = createManualClock(new Date());
    database = await openTestDatabase(driver);
    ({ vault, t } = await startVaultBroker(database, clock, dir));
    http = await serveBroker(t);
  });
  afterAll(async () => {
    await http?.close();
    await database?.drop();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const openTask = async (roles: string[]) =>
    (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles, ttl_seconds: 3600 })).json.task.id as string;
  type LeaseView = { id: string; role: string; status: string; credential_ref: string | null };
  const leasesOf = async (task: string) => (await t.call('GET', `/v1/leases?task=${task}`, { subject: 'admin' })).json.items as LeaseView[];

  /** `tasklease run <args>` in this process, its output captured. */
  async function run(args: string[]) {
    let stderr = '';
    const env: NodeJS.ProcessEnv = { ...process.env, TASKLEASE_URL: http.url, TASKLEASE_TOKEN: await t.tokenFor('agent-1'), VAULT_ADDR: vault.url };
    delete env.VAULT_TOKEN;
    delete env.PGPASSWORD;
    const code = await runProgram(['run', ...args], { version: '0', env, io: { stdout: () => {}, stderr: (s) => (stderr += s) } });
    return { code, stderr };
  }

  /** The Vault lease or token behind each of `task`'s leases, once they are revoked (a sweep finishes an asynchronous revocation). */
  async function vaultSide(task: string) {
    await t.broker.sweeper.runOnce();
    const leases = await leasesOf(task);
    return leases.map((l) => {
      const [kind, id] = (l.credential_ref ?? '').split(/:(.*)/s) as [string, string];
      return { role: l.role, status: l.status, kind, live: kind === 'lease' ? vault.leaseLive(id) : vault.tokenLive(id) };
    });
  }

  it('gives a token-mode role to the child as VAULT_TOKEN, which Vault accepts, then revokes the token in Vault', async () => {
    const task = await openTask(['deploy-token']);
    const out = outFile();
    const { code, stderr } = await run(['--task', task, '--role', 'deploy-token', '--', NODE, '--input-type=module', '-e', vaultChild, out]);
    expect(code, stderr).toBe(0);
    const seen = JSON.parse(readFileSync(out, 'utf8'));
    expect(seen.identity).toBeNull();
    expect(seen.token).toMatch(/^hvs\./);
    expect(seen.lookup.status).toBe(200);
    expect(seen.lookup.body.data).toMatchObject({ policies: expect.arrayContaining(['deploy']), meta: { tasklease_task: task } });
    expect(stderr).not.toContain(seen.token);

    const [side] = await vaultSide(task);
    expect(side).toMatchObject({ role: 'deploy-token', kind: 'accessor', live: false });
    expect(side!.status).not.toBe('active');
    // The token the child held no longer works.
    expect((await fetch(`${vault.url}/v1/auth/token/lookup-self`, { headers: { 'x-vault-token': seen.token } })).status).toBe(403);
  });

  it("maps a dynamic secret's field with --env PGPASSWORD=orders-db.password, then revokes the Vault lease", async () => {
    const task = await openTask(['orders-db']);
    const out = outFile();
    const { code, stderr } = await run(['--task', task, '--role', 'orders-db', '--env', 'PGPASSWORD=orders-db.password', '--', NODE, '--input-type=module', '-e', vaultChild, out]);
    expect(code, stderr).toBe(0);
    const seen = JSON.parse(readFileSync(out, 'utf8'));
    expect(seen.token).toBeNull();
    const [lease] = [...vault.leases.values()].filter((l) => l.data?.password === seen.password);
    expect(lease, 'the password is one Vault issued').toBeDefined();
    expect(stderr).not.toContain(seen.password);

    const [side] = await vaultSide(task);
    expect(side).toMatchObject({ role: 'orders-db', kind: 'lease', live: false });
    expect(side!.status).not.toBe('active');
  });

  it('refuses, before starting the child, a dynamic role mapped to no variable or file', async () => {
    const task = await openTask(['orders-db']);
    const out = outFile();
    const { code, stderr } = await run(['--task', task, '--role', 'orders-db', '--', NODE, '-e', '', out]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^tasklease: role orders-db \(vault\) reaches the child by no --env or --file: .*\n$/);
    expect((await vaultSide(task)).map((s) => [s.status, s.live])).toEqual([[expect.not.stringMatching(/^active$/), false]]);
  });
});
