// A test broker whose `vault` backend logs in to the protocol-faithful Vault fake by AppRole, with the
// roles the Vault tests share: `orders-db` (a dynamic database secret) and `deploy-token` (a token).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ManualClock } from '../../src/clock.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { HARNESS_ROLES, startTestBroker, type TestBroker } from './broker.js';
import type { TestDatabase } from './db.js';
import { startVaultFake, type VaultFake } from './vault-fake.js';

export const VAULT_AGENTS = [{ issuer: 'test', subject_pattern: 'agent-.*' }];

/** What the broker's own Vault token may do: exactly what its roles need. */
export const VAULT_BROKER_POLICY = {
  'database/creds/*': ['read'],
  'sys/leases/revoke': ['update'],
  'sys/leases/renew': ['update'],
  'auth/token/create/agents': ['update'],
  'auth/token/revoke-accessor': ['update'],
  'auth/token/renew-accessor': ['update'],
};

/** The Vault fake and a broker on `database` using it; `dir` receives the AppRole files; `roles` are added to the shared ones. */
export async function startVaultBroker(database: TestDatabase, clock: ManualClock, dir: string, roles: NonNullable<ConfigInput['roles']> = []): Promise<{ vault: VaultFake; t: TestBroker }> {
  const vault = await startVaultFake({
    clock,
    policies: { broker: VAULT_BROKER_POLICY },
    dynamicRoles: [{ mount: 'database', role: 'readonly', kind: 'database', defaultTtl: 3600, maxTtl: 7200 }],
    tokenRoles: [{ name: 'agents', allowedPolicies: ['deploy'], orphan: true }],
    // As in production: the broker's token outlives the leases it reads (Vault revokes them with it).
    approle: { roleId: 'broker-role', secretId: 'broker-secret', policies: ['broker'], ttl: 3600, maxTtl: 30 * 86400 },
  });
  writeFileSync(join(dir, 'role_id'), 'broker-role');
  writeFileSync(join(dir, 'secret_id'), 'broker-secret');
  const t = await startTestBroker(database, {
    clock,
    config: {
      backends: { vault: { type: 'vault', address: vault.url, auth: { method: 'approle', role_id_file: join(dir, 'role_id'), secret_id_file: join(dir, 'secret_id') } } },
      roles: [
        ...HARNESS_ROLES,
        { name: 'orders-db', backend: 'vault', ttl: '15m', max_ttl: '1h', allow: VAULT_AGENTS, vault: { mode: 'dynamic', path: 'database/creds/readonly' } },
        { name: 'deploy-token', backend: 'vault', ttl: '10m', max_ttl: '30m', allow: VAULT_AGENTS, vault: { mode: 'token', token_role: 'agents', policies: ['deploy'] } },
        ...roles,
      ],
    },
  });
  return { vault, t };
}
