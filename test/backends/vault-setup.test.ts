import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { openTestDatabase, type TestDatabase } from '../support/db.js';
import { ADMIN_STATIC_TOKEN, freshId, HARNESS_ROLES, startTestBroker } from '../support/broker.js';
import { startVaultFake, type VaultFake } from '../support/vault-fake.js';

const AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

describe('vault: namespaces, token login, token renewal and the permission self-check', () => {
  let database: TestDatabase;
  let vault: VaultFake;
  const clock = createManualClock(new Date());
  const dir = mkdtempSync(join(tmpdir(), 'tl-vault-setup-'));

  beforeAll(async () => {
    vault = await startVaultFake({
      clock,
      namespaces: ['agents'],
      policies: {
        full: { 'database/creds/*': ['read'], 'sys/leases/*': ['update'], 'auth/token/*': ['update', 'read'] },
        partial: { 'database/creds/*': ['read'] },
      },
      dynamicRoles: [{ mount: 'database', role: 'readonly', kind: 'database', defaultTtl: 3600, maxTtl: 7200, namespace: 'agents' }],
      tokenRoles: [{ name: 'agents', allowedPolicies: ['deploy'], orphan: true, namespace: 'agents', maxTtl: 1800 }],
    });
    database = await openTestDatabase('postgres');
  });
  afterAll(async () => {
    await database?.drop();
    await vault?.close();
  });

  async function broker(policy: string) {
    const { token } = vault.createToken({ policies: [policy], ttl: 86_400, renewable: true, namespace: 'agents' });
    const tokenFile = join(dir, `${policy}-token`);
    writeFileSync(tokenFile, token, { mode: 0o600 });
    return startTestBroker(database, {
      clock,
      config: {
        backends: { vault: { type: 'vault', address: vault.url, namespace: 'agents', auth: { method: 'token', token_file: tokenFile } } },
        roles: [
          ...HARNESS_ROLES,
          { name: 'orders-db', backend: 'vault', ttl: '15m', max_ttl: '1h', allow: AGENTS, vault: { mode: 'dynamic', path: 'database/creds/readonly' } },
          { name: 'deploy-token', backend: 'vault', ttl: '10m', max_ttl: '30m', allow: AGENTS, vault: { mode: 'token', token_role: 'agents', policies: ['deploy'] } },
        ],
      },
    });
  }

  it('talks to its namespace, and renews a Vault token lease by accessor within the limits', async () => {
    const t = await broker('full');
    const task = (await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-ns' }, roles: ['orders-db', 'deploy-token'], ttl_seconds: 7200 })).json.task.id;
    const db = await t.call('POST', '/v1/credentials', { subject: 'agent-ns' }, { task, role: 'orders-db' });
    expect(db.status).toBe(201);
    expect(vault.leases.get(db.json.credentials.lease_id)!.namespace).toBe('agents');
    expect(vault.calls.filter((c) => c.path === 'database/creds/readonly').every((c) => c.namespace === 'agents')).toBe(true);

    const tok = await t.call('POST', '/v1/credentials', { subject: 'agent-ns' }, { task, role: 'deploy-token' });
    expect(tok.status).toBe(201);
    clock.advance(300);
    const renewed = await t.call('POST', `/v1/leases/${tok.json.lease.id}/renew`, { subject: 'agent-ns' }, { increment_seconds: 900 });
    expect(renewed.status, renewed.text).toBe(200);
    // The earlier of what was asked (900 s) and what Vault granted (it may round down).
    const left = Date.parse(renewed.json.lease.expires_at) - clock.now().getTime();
    expect(left).toBeGreaterThan(880_000);
    expect(left).toBeLessThanOrEqual(900_000);
    expect(Date.parse(renewed.json.lease.backend_expires_at)).toBeGreaterThanOrEqual(Date.parse(renewed.json.lease.expires_at));
    const ready = await t.call('GET', '/readyz', {});
    expect(ready.status).toBe(200);
  });

  it('names the permissions a broker token lacks to admins and the log; /readyz says only not ready', async () => {
    const t = await broker('partial');
    const ready = await t.call('GET', '/readyz', {});
    expect({ status: ready.status, json: ready.json }).toEqual({ status: 503, json: { status: 'not_ready', policy_set: expect.stringMatching(/^[0-9a-f]{16}$/) } });
    for (const secret of ['vault', 'sys/leases', 'update on', 'orders-db']) expect(ready.text).not.toContain(secret);

    const missing = ['update on sys/leases/revoke', 'update on auth/token/create/agents', 'update on auth/token/revoke-accessor'];
    const detail = await t.call('GET', '/v1/readiness', { bearer: ADMIN_STATIC_TOKEN });
    expect(detail.status).toBe(200);
    expect(detail.json.status).toBe('not_ready');
    expect(detail.json.checks.backends.vault.ok).toBe(false);
    expect(detail.json.checks.backends.vault.missing).toEqual(expect.arrayContaining(missing));
    expect((await t.call('GET', '/v1/readiness', { subject: 'agent-1' })).status).toBe(403);

    // Logged once when readiness is lost, not on every probe.
    const logged = t.logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'not ready');
    expect(logged).toHaveLength(1);
    expect(logged[0].checks.backends.vault.missing).toEqual(expect.arrayContaining(missing));
  });
});
