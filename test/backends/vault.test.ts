import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import nodeVault from 'node-vault';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { SweeperSchema } from '../../src/config/schema.js';
import { leases } from '../../src/db/schema.js';
import { createLogger } from '../../src/log.js';
import { createSweeper } from '../../src/sweeper/sweeper.js';
import { DRIVERS, openTestDatabase, type TestDatabase } from '../support/db.js';
import { dumpTables, expectNoSecrets } from '../support/secrets.js';
import type { TestBroker } from '../support/broker.js';
import type { VaultFake } from '../support/vault-fake.js';
import { startVaultBroker, VAULT_AGENTS } from '../support/vault-broker.js';

describe.each(DRIVERS)('vault backend on %s', (driver) => {
  let database: TestDatabase;
  let vault: VaultFake;
  let t: TestBroker;
  const clock = createManualClock(new Date());
  const dir = mkdtempSync(join(tmpdir(), 'tl-vault-'));

  beforeAll(async () => {
    database = await openTestDatabase(driver);
    ({ vault, t } = await startVaultBroker(database, clock, dir, [
      ...(['dynamic', 'token'] as const).map((mode) => ({
        name: `gated-${mode}`,
        backend: 'vault',
        ttl: '15m',
        max_ttl: '1h',
        allow: VAULT_AGENTS,
        requires_approval: true,
        approvers: [{ issuer: 'test', subject: 'approver-1' }],
        vault: mode === 'dynamic' ? { mode, path: 'database/creds/readonly' } : { mode, token_role: 'agents', policies: ['deploy'] },
      })),
    ]));
  });
  afterAll(async () => {
    await database?.drop();
    await vault?.close();
  });

  async function openTask(agent: string, ttl = 7200) {
    const res = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: agent }, roles: ['orders-db', 'deploy-token', 'gated-dynamic', 'gated-token'], ttl_seconds: ttl });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }
  /** A credential for a task with `seconds` left before its deadline (in epoch ms). */
  async function issueWithTimeLeft(agent: string, role: string, seconds: number) {
    const deadline = clock.now().getTime() + seconds * 1000;
    const task = await openTask(agent, seconds);
    const res = await t.call('POST', '/v1/credentials', { subject: agent }, { task, role });
    expect(res.status).toBe(201);
    return { deadline, res };
  }
  const row = async (id: string) => (await database.db.select().from(leases).where(eq(leases.id, id)))[0]!;

  it('issues database credentials and a Vault token for a task; completing it revokes both in Vault', async () => {
    const task = await openTask('agent-v1');
    const db = await t.call('POST', '/v1/credentials', { subject: 'agent-v1' }, { task, role: 'orders-db' });
    expect(db.status).toBe(201);
    expect(db.json.credentials).toMatchObject({ type: 'vault', mode: 'dynamic', data: { username: expect.any(String), password: expect.any(String) } });
    const vaultLeaseId = db.json.credentials.lease_id as string;
    expect(db.json.lease.credential_ref).toBe(`lease:${vaultLeaseId}`);
    // Vault's role grants 1 h; the broker brought Vault's lease down to the lease's own 15 min TTL.
    expect(Date.parse(db.json.lease.expires_at) - Date.parse(db.json.lease.issued_at)).toBe(900_000);
    expect(db.json.credentials.lease_duration).toBeLessThanOrEqual(900);
    expect(vault.leases.get(vaultLeaseId)!.expiresAt.getTime()).toBeLessThanOrEqual(Date.parse(db.json.lease.expires_at));

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
    // One renewal at issue (bringing Vault's 1 h down to the lease's 15 min), one asked for.
    expect(vault.leases.get(issued.json.credentials.lease_id)!.renewals).toBe(2);
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

  it('retries a revocation that failed inside Vault with the normal backoff, and revokes within one step of its recovery', async () => {
    const task = await openTask('agent-v10');
    const res = await t.call('POST', '/v1/credentials', { subject: 'agent-v10' }, { task, role: 'orders-db' });
    const id = res.json.lease.id as string;
    const vaultLease = res.json.credentials.lease_id as string;
    // Production's sweeper settings (max_attempts 8), not the harness's 3: three failures are not yet too many.
    const sweeper = createSweeper({ db: database.db, clock, backends: t.broker.backends, config: SweeperSchema.parse({}), log: createLogger('silent'), id: 'vault-engine-down' });
    // The database behind the engine is down for three revocations: Vault answers 400 "failed to revoke entry".
    vault.failRevocations('database', 3);
    await t.call('POST', `/v1/tasks/${task}/complete`, { subject: 'orchestrator' }, { outcome: 'done' });
    for (let attempt = 1; attempt <= 3; attempt++) {
      const due = (await row(id)).nextAttemptAt;
      if (due) clock.set(due);
      await sweeper.runOnce();
      const failed = await row(id);
      expect(failed).toMatchObject({ status: 'revoking', attempts: attempt });
      expect(failed.lastError).toContain('vault_failed: Vault answered 400: failed to revoke entry');
      // The normal backoff (at most 2^(n-1) s after the n-th failure), not failed_retry_interval's 5 minutes.
      expect(failed.nextAttemptAt!.getTime() - clock.now().getTime()).toBeLessThanOrEqual(2 ** (attempt - 1) * 1000);
    }
    expect(vault.leaseLive(vaultLease)).toBe(true);
    // Vault has recovered: the next step of the backoff revokes the lease, at Vault too.
    clock.set((await row(id)).nextAttemptAt!);
    await sweeper.runOnce();
    expect(await row(id)).toMatchObject({ status: 'revoked', reason: 'task_completed', lastError: null });
    expect(vault.leases.get(vaultLease)!.revoked).toBe(true);
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

  it("a Vault token cannot outlive its task's deadline at Vault: the holder's renew-self stops there", async () => {
    const { deadline, res } = await issueWithTimeLeft('agent-v11', 'deploy-token', 120);
    const accessor = res.json.credentials.accessor as string;
    // The agent holds the token itself and asks Vault directly for an hour more: Vault grants only what is left.
    const agent = nodeVault({ apiVersion: 'v1', endpoint: vault.url, token: res.json.credentials.token });
    clock.advance(30);
    const renewed = await agent.write('auth/token/renew-self', { increment: '1h' });
    expect(renewed.auth.lease_duration).toBeLessThanOrEqual(90);
    expect(vault.tokens.get(accessor)!.expiresAt.getTime()).toBeLessThanOrEqual(deadline);
    clock.advance(90);
    expect(vault.tokenLive(accessor)).toBe(false);
    expect(vault.calls.filter((c) => c.path === 'auth/token/create/agents').at(-1)?.body).toMatchObject({ ttl: '120s', explicit_max_ttl: '120s' });
  });

  it("a renewable token's lease says it may work until its ceiling, so a failed revocation keeps it held until then", async () => {
    const { res } = await issueWithTimeLeft('agent-v14', 'deploy-token', 7200);
    const issued = Date.parse(res.json.lease.issued_at);
    // The lease ends at the role's ttl (10 min), but its holder can renew-self up to max_ttl (30 min) at Vault.
    expect(Date.parse(res.json.lease.expires_at)).toBe(issued + 600_000);
    expect(Date.parse(res.json.lease.backend_expires_at)).toBe(issued + 1_800_000);
    expect(vault.calls.filter((c) => c.path === 'auth/token/create/agents').at(-1)?.body).toMatchObject({ ttl: '600s', explicit_max_ttl: '1800s' });
  });

  it("a dynamic secret dies at Vault when its lease does, even with no broker left to revoke it", async () => {
    const { deadline, res } = await issueWithTimeLeft('agent-v13', 'orders-db', 120);
    const vaultLease = res.json.credentials.lease_id as string;
    // Vault's role grants 3600 s; the task has 120 s left.
    expect(vault.leases.get(vaultLease)!.expiresAt.getTime()).toBeLessThanOrEqual(deadline);
    expect(Date.parse(res.json.lease.backend_expires_at)).toBeLessThanOrEqual(deadline);
    clock.advance(120);
    expect(vault.leaseLive(vaultLease)).toBe(false);
  });

  it('never renews a credential redeemed from an approval past the TTL the approver saw, at the broker or at Vault', async () => {
    const task = await openTask('agent-v12');
    const redeem = async (role: string) => {
      const asked = await t.call('POST', '/v1/credentials', { subject: 'agent-v12' }, { task, role, ttl_seconds: 60 });
      expect(asked.json.approval.requested_ttl_seconds).toBe(60);
      const approval = asked.json.approval.id as string;
      expect((await t.call('POST', `/v1/approvals/${approval}/approve`, { subject: 'approver-1' }, { reason: 'one minute' })).status).toBe(200);
      const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-v12' }, { task, role, approval });
      expect(issued.status).toBe(201);
      return issued.json;
    };
    const db = await redeem('gated-dynamic');
    const issuedAt = Date.parse(db.lease.issued_at);
    clock.advance(30);
    // Asking for 15 minutes more: the approver saw 60 s, so the lease may reach issue + 60 s and no further.
    const renewed = await t.call('POST', `/v1/leases/${db.lease.id}/renew`, { subject: 'agent-v12' }, { increment_seconds: 900 });
    expect(renewed.status).toBe(409);
    expect(renewed.json.code).toBe('renew_limit');
    expect(Date.parse((await t.call('GET', `/v1/leases/${db.lease.id}`, { subject: 'agent-v12' })).json.lease.expires_at)).toBe(issuedAt + 60_000);

    // A token the holder renews itself at Vault stops there too (explicit_max_ttl is the approved TTL).
    const tok = await redeem('gated-token');
    const agent = nodeVault({ apiVersion: 'v1', endpoint: vault.url, token: tok.credentials.token });
    clock.advance(10);
    expect((await agent.write('auth/token/renew-self', { increment: '15m' })).auth.lease_duration).toBeLessThanOrEqual(50);
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

  it('reports the permissions it holds to admins', async () => {
    const ready = await t.call('GET', '/v1/readiness', { subject: 'admin' });
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
