import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { leases } from '../../src/db/schema.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { dumpTables, expectNoSecrets } from '../support/secrets.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from '../support/broker.js';
import { startVaultFake, type VaultFake } from '../support/vault-fake.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];
const BROKER_POLICY = {
  'database/creds/*': ['read'],
  'sys/leases/revoke': ['update'],
  'sys/leases/renew': ['update'],
  'auth/token/create/agents': ['update'],
  'auth/token/revoke-accessor': ['update'],
  'auth/token/renew-accessor': ['update'],
};

describe.each(DRIVERS)('vault backend on %s', (driver) => {
  let database: TestDatabase;
  let vault: VaultFake;
  let t: TestBroker;
  const clock = createManualClock(new Date());
  const dir = mkdtempSync(join(tmpdir(), 'tl-vault-'));

  beforeAll(async () => {
    vault = await startVaultFake({
      clock,
      policies: { broker: BROKER_POLICY },
      dynamicRoles: [{ mount: 'database', role: 'readonly', kind: 'database', defaultTtl: 3600, maxTtl: 7200 }],
      tokenRoles: [{ name: 'agents', allowedPolicies: ['deploy'], orphan: true }],
      // As in production: the broker's token outlives the leases it reads (Vault revokes them with it).
      approle: { roleId: 'broker-role', secretId: 'broker-secret', policies: ['broker'], ttl: 3600, maxTtl: 30 * 86400 },
    });
    writeFileSync(join(dir, 'role_id'), 'broker-role');
    writeFileSync(join(dir, 'secret_id'), 'broker-secret');
    database = await openTestDatabase(driver);
    t = await startTestBroker(database, {
      clock,
      config: {
        backends: { vault: { type: 'vault', address: vault.url, auth: { method: 'approle', role_id_file: join(dir, 'role_id'), secret_id_file: join(dir, 'secret_id') } } },
        roles: [
          ...HARNESS_ROLES,
          { name: 'orders-db', backend: 'vault', ttl: '15m', max_ttl: '1h', allow: AGENTS, vault: { mode: 'dynamic', path: 'database/creds/readonly' } },
          { name: 'deploy-token', backend: 'vault', ttl: '10m', max_ttl: '30m', allow: AGENTS, vault: { mode: 'token', token_role: 'agents', policies: ['deploy'] } },
        ],
      },
    });
  });
  afterAll(async () => {
    await database?.drop();
    await vault?.close();
  });

  async function openTask(agent: string, ttl = 7200) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['orders-db', 'deploy-token'], ttl_seconds: ttl });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }
  const row = async (id: string) => (await database.db.select().from(leases).where(eq(leases.id, id)))[0]!;

  it('issues database credentials and a Vault token for a task; completing it revokes both in Vault', async () => {
    const task = await openTask('agent-v1');
    const db = await t.call('POST', '/v1/credentials', { subject: 'agent-v1' }, { task, role: 'orders-db' });
    expect(db.status).toBe(201);
    expect(db.json.credentials).toMatchObject({ type: 'vault', mode: 'dynamic', data: { username: expect.any(String), password: expect.any(String) } });
    const vaultLeaseId = db.json.credentials.lease_id as string;
    expect(db.json.lease.credential_ref).toBe(`lease:${vaultLeaseId}`);
    // Vault granted 1 h; the lease ends at its own 15 min TTL, and the sweeper revokes then.
    expect(Date.parse(db.json.lease.expires_at) - Date.parse(db.json.lease.issued_at)).toBe(900_000);

    const tok = await t.call('POST', '/v1/credentials', { subject: 'agent-v1' }, { task, role: 'deploy-token' });
    expect(tok.status).toBe(201);
    const accessor = tok.json.credentials.accessor as string;
    expect(tok.json.lease.credential_ref).toBe(`accessor:${accessor}`);
    expect(vault.tokens.get(accessor)).toMatchObject({ meta: { tasklease_task: task, tasklease_lease: tok.json.lease.id, tasklease_agent: 'test/agent-v1' } });
    expect(vault.leaseLive(vaultLeaseId)).toBe(true);
    expect(vault.tokenLive(accessor)).toBe(true);

    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    expect(vault.leases.get(vaultLeaseId)!.revoked).toBe(true);
    expect(vault.tokens.get(accessor)!.revoked).toBe(true);
    expect(await row(db.json.lease.id)).toMatchObject({ status: 'revoked', reason: 'task_completed' });
    expect(await row(tok.json.lease.id)).toMatchObject({ status: 'revoked', reason: 'task_completed' });
  });

  it("an admin's force-revoke revokes the one lease in Vault", async () => {
    const task = await openTask('agent-v2');
    const a = await t.call('POST', '/v1/credentials', { subject: 'agent-v2' }, { task, role: 'orders-db' });
    const b = await t.call('POST', '/v1/credentials', { subject: 'agent-v2' }, { task, role: 'orders-db' });
    await t.call('POST', `/v1/leases/${a.json.lease.id}/revoke`, { subject: 'admin' }, { reason: 'leaked in a log' });
    await t.broker.sweeper.runOnce();
    expect(vault.leases.get(a.json.credentials.lease_id)!.revoked).toBe(true);
    expect(vault.leaseLive(b.json.credentials.lease_id)).toBe(true);
  });

  it("renewal extends the lease up to the role's max_ttl and no further", async () => {
    const task = await openTask('agent-v3');
    const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-v3' }, { task, role: 'orders-db' });
    const id = issued.json.lease.id;
    clock.advance(600);
    const renewed = await t.call('POST', `/v1/leases/${id}/renew`, { subject: 'agent-v3' }, { increment_seconds: 1800 });
    expect(renewed.status, renewed.text).toBe(200);
    expect(Date.parse(renewed.json.lease.expires_at) - clock.now().getTime()).toBe(1_800_000);
    expect(vault.leases.get(issued.json.credentials.lease_id)!.renewals).toBe(1);
    clock.advance(600);
    const capped = await t.call('POST', `/v1/leases/${id}/renew`, { subject: 'agent-v3' }, { increment_seconds: 7200 });
    expect(Date.parse(capped.json.lease.expires_at)).toBe(Date.parse(issued.json.lease.issued_at) + 3_600_000);
    const beyond = await t.call('POST', `/v1/leases/${id}/renew`, { subject: 'agent-v3' }, { increment_seconds: 60 });
    expect(beyond.status).toBe(409);
    expect(beyond.json.code).toBe('renew_limit');
    const audit = await t.call('GET', `/v1/audit?target=lease:${id}&action=lease.renewed`, { subject: 'admin' });
    expect(audit.json.items).toHaveLength(2);
  });

  it('keeps leases revoking while Vault answers 503, and revokes them all once it recovers', async () => {
    const task = await openTask('agent-v4');
    const ids: { lease: string; vault: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.call('POST', '/v1/credentials', { subject: 'agent-v4' }, { task, role: 'orders-db' });
      ids.push({ lease: res.json.lease.id, vault: res.json.credentials.lease_id });
    }
    vault.failNext('sys/leases/revoke', 503, 3);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    for (const id of ids) {
      expect(await row(id.lease)).toMatchObject({ status: 'revoking', attempts: 1 });
      expect((await row(id.lease)).lastError).toContain('vault_unavailable');
      expect(vault.leases.get(id.vault)!.revoked).toBe(false);
    }
    clock.advance(30);
    await t.broker.sweeper.runOnce();
    for (const id of ids) {
      expect(await row(id.lease)).toMatchObject({ status: 'revoked' });
      expect(vault.leases.get(id.vault)!.revoked).toBe(true);
    }
  });

  it('a revocation Vault forbids parks the lease in revoke_failed, naming the missing permission', async () => {
    const task = await openTask('agent-v5');
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-v5' }, { task, role: 'deploy-token' });
    vault.failNext('auth/token/revoke-accessor', 403, 1, ['permission denied']);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    const parked = await row(res.json.lease.id);
    expect(parked.status).toBe('revoke_failed');
    expect(parked.lastError).toContain("lacks 'update' on auth/token/revoke-accessor");
    clock.advance(301);
    await t.broker.sweeper.runOnce();
    expect((await row(res.json.lease.id)).status).toBe('revoked');
  });

  it("renews the broker's own token before it expires and logs in again after, without a failed request", async () => {
    const task = await openTask('agent-v6', 20_000);
    const logins = () => vault.calls.filter((c) => c.path === 'auth/approle/login').length;
    const before = logins();
    const brokerToken = [...vault.tokens.values()].filter((tk) => tk.path === 'auth/approle/login' && vault.tokenLive(tk.accessor)).at(-1)!;
    // Five minutes before the broker's token lapses (past two thirds of its life): renewed, not replaced.
    clock.advance((brokerToken.expiresAt.getTime() - clock.now().getTime()) / 1000 - 300);
    expect((await t.call('POST', '/v1/credentials', { subject: 'agent-v6' }, { task, role: 'orders-db' })).status).toBe(201);
    expect(vault.calls.map((c) => c.path)).toContain('auth/token/renew-self');
    expect(logins()).toBe(before);
    clock.advance(4000); // the token has lapsed: a new login, and the request still succeeds
    expect((await t.call('POST', '/v1/credentials', { subject: 'agent-v6' }, { task, role: 'orders-db' })).status).toBe(201);
    expect(logins()).toBe(before + 1);
  });

  it('the sweeper keeps the broker token renewed, so the leases it read stay alive', async () => {
    const task = await openTask('agent-v7', 20_000);
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-v7', }, { task, role: 'orders-db', ttl_seconds: 3600 });
    for (let i = 0; i < 3; i++) {
      clock.advance(1500);
      await t.broker.sweeper.runOnce();
    }
    // 75 minutes on, well past the login token's first hour: renewed in housekeeping, so Vault kept the lease.
    expect(vault.leaseLive(res.json.credentials.lease_id) || vault.leases.get(res.json.credentials.lease_id)!.expiresAt <= clock.now()).toBe(true);
    expect(vault.tokenLive([...vault.tokens.values()].filter((tk) => tk.path === 'auth/approle/login').at(-1)!.accessor)).toBe(true);
  });

  it('reports the permissions it holds in /readyz', async () => {
    const ready = await t.call('GET', '/readyz', {});
    expect(ready.status).toBe(200);
    expect(ready.json.checks.backends.vault).toEqual({ ok: true, missing: [] });
  });

  it('keeps Vault tokens and secret data out of every table and log line', async () => {
    const task = await openTask('agent-v9');
    const db = await t.call('POST', '/v1/credentials', { subject: 'agent-v9' }, { task, role: 'orders-db' });
    const tok = await t.call('POST', '/v1/credentials', { subject: 'agent-v9' }, { task, role: 'deploy-token' });
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    await t.broker.sweeper.runOnce();
    const secrets = [db.json.credentials.data.password, tok.json.credentials.token, ...[...vault.tokens.values()].filter((x) => x.path === 'auth/approle/login').map((x) => x.token), 'broker-secret'];
    expectNoSecrets(secrets, [...(await dumpTables(database)), ...t.logs.lines]);
  });
});
