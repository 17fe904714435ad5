import type { Clock } from '../clock.js';
import type { RoleConfig } from '../config/schema.js';
import type { VaultBackendConfig, VaultRoleConfig } from '../config/vault.js';
import { actorOf } from '../identity/types.js';
import type { Logger } from '../log.js';
import { BackendError, type Backend } from './types.js';
import { toBackendError } from './vault-errors.js';
import { createVaultSession, vaultMessage, vaultStatus } from './vault-session.js';

export interface VaultBackendDeps {
  name: string;
  config: VaultBackendConfig;
  role: (name: string) => RoleConfig | undefined;
  roleNames: () => string[];
  clock: Clock;
  log: Logger;
}

const LEASE = 'lease:';
const ACCESSOR = 'accessor:';

/**
 * Credentials from HashiCorp Vault (or OpenBao), revoked through Vault's own
 * lease API so that Vault's lease and the broker's never disagree for long.
 * Dynamic secrets keep Vault's lease id; tokens keep their accessor, never
 * the token. A lease or accessor that is already gone counts as revoked.
 */
export function createVaultBackend(deps: VaultBackendDeps): Backend {
  const session = createVaultSession(deps.config, deps.clock, deps.log);
  const vaultRole = (name: string): VaultRoleConfig => {
    const v = deps.role(name)?.vault;
    if (!v) throw new BackendError('vault_role_missing', `role '${name}' has no vault settings`, false);
    return v;
  };

  /**
   * A read takes no TTL: Vault gives a dynamic secret its role's. Renewing it at once with the lease's TTL
   * as the increment brings Vault's own end (and a database engine's VALID UNTIL) down to the broker's,
   * so the secret dies on time even if no broker is left to revoke it. Best effort: if Vault refuses, the
   * longer end stands and backend_expires_at says so.
   */
  async function boundAtVault(leaseId: string, vaultLeaseId: string, duration: number, ttlSeconds: number): Promise<number> {
    const path = 'sys/leases/renew';
    try {
      const res = await session.run((c) => c.write(path, { lease_id: vaultLeaseId, increment: ttlSeconds }));
      return Math.min(duration, Number(res?.lease_duration ?? duration));
    } catch (err) {
      deps.log.warn({ backend: deps.name, lease: leaseId, err: toBackendError(err, 'renew', path, 'update').message }, "could not bring Vault's lease down to the lease's TTL");
      return duration;
    }
  }

  return {
    name: deps.name,
    type: 'vault',
    async mint({ leaseId, taskId, role, identity, ttlSeconds, maxTtlSeconds, now }) {
      const v = vaultRole(role.name);
      if (v.mode === 'dynamic') {
        let res;
        try {
          res = await session.run((c) => c.read(v.path));
        } catch (err) {
          throw toBackendError(err, 'mint', v.path, 'read');
        }
        if (!res?.lease_id) throw new BackendError('vault_no_lease', `Vault returned no lease for ${v.path}`, false);
        let duration = Number(res.lease_duration ?? 0);
        if (res.renewable && duration > ttlSeconds) duration = await boundAtVault(leaseId, res.lease_id, duration, ttlSeconds);
        return {
          credentials: { type: 'vault', mode: 'dynamic', lease_id: res.lease_id, lease_duration: duration, renewable: !!res.renewable, data: res.data },
          ref: `${LEASE}${res.lease_id}`,
          // Vault's own end for the secret; the broker revokes at the earlier of this and the lease's TTL.
          expiresAt: new Date(now.getTime() + duration * 1000),
        };
      }
      const path = v.token_role ? `auth/token/create/${v.token_role}` : 'auth/token/create';
      let res;
      try {
        res = await session.run((c) =>
          c.write(path, {
            policies: v.policies,
            ttl: `${ttlSeconds}s`,
            // The token holder may renew-self: Vault itself stops it at the role's max_ttl, the task's deadline, the approved TTL.
            explicit_max_ttl: `${maxTtlSeconds}s`,
            num_uses: v.num_uses,
            renewable: v.renewable,
            display_name: `tasklease-${leaseId}`.slice(0, 64),
            meta: { tasklease_task: taskId, tasklease_lease: leaseId, tasklease_agent: actorOf(identity) },
          }),
        );
      } catch (err) {
        throw toBackendError(err, 'mint', path, 'update');
      }
      const auth = res?.auth;
      if (!auth?.client_token || !auth.accessor) throw new BackendError('vault_no_token', 'Vault returned no token', false);
      return {
        credentials: { type: 'vault', mode: 'token', token: auth.client_token, accessor: auth.accessor, policies: auth.policies, lease_duration: auth.lease_duration, renewable: !!auth.renewable },
        ref: `${ACCESSOR}${auth.accessor}`,
        expiresAt: new Date(now.getTime() + Number(auth.lease_duration ?? ttlSeconds) * 1000),
        // A renewable token lives as long as its holder keeps renewing it, up to explicit_max_ttl: that is when Vault stops honouring it.
        ...(auth.renewable ? { honouredUntil: new Date(now.getTime() + Math.max(Number(auth.lease_duration ?? ttlSeconds), maxTtlSeconds) * 1000) } : {}),
      };
    },

    async revoke({ ref }) {
      if (ref.startsWith(LEASE)) {
        const path = 'sys/leases/revoke';
        try {
          await session.run((c) => c.write(path, { lease_id: ref.slice(LEASE.length), sync: true }));
        } catch (err) {
          throw toBackendError(err, 'revoke', path, 'update');
        }
        return;
      }
      const path = 'auth/token/revoke-accessor';
      try {
        await session.run((c) => c.write(path, { accessor: ref.slice(ACCESSOR.length) }));
      } catch (err) {
        // A token that expired or was revoked already has no accessor any more: that is the state we wanted.
        if (vaultStatus(err) === 400 && /invalid accessor/i.test(vaultMessage(err))) return;
        throw toBackendError(err, 'revoke', path, 'update');
      }
    },

    async renew({ ref, incrementSeconds }) {
      const token = ref.startsWith(ACCESSOR);
      const path = token ? 'auth/token/renew-accessor' : 'sys/leases/renew';
      const body = token ? { accessor: ref.slice(ACCESSOR.length), increment: incrementSeconds } : { lease_id: ref.slice(LEASE.length), increment: incrementSeconds };
      let res;
      try {
        res = await session.run((c) => c.write(path, body));
      } catch (err) {
        throw toBackendError(err, 'renew', path, 'update');
      }
      // Vault may grant less than asked (the role's or the token's max TTL): its answer is the new end.
      const granted = Number((token ? res?.auth?.lease_duration : res?.lease_duration) ?? 0);
      return { expiresAt: new Date(deps.clock.now().getTime() + granted * 1000) };
    },

    async housekeeping() {
      await session.keepAlive().catch((err: unknown) => deps.log.warn({ backend: deps.name, status: vaultStatus(err) }, 'could not renew the Vault token'));
    },

    /** Which of the permissions the configured roles need the broker's token lacks (for /readyz and the log). */
    async check() {
      const paths = new Map<string, string>();
      for (const name of deps.roleNames()) {
        const v = deps.role(name)?.vault;
        if (!v) continue;
        if (v.mode === 'dynamic') {
          paths.set(v.path, 'read');
          paths.set('sys/leases/revoke', 'update');
          paths.set('sys/leases/renew', 'update');
        } else {
          paths.set(v.token_role ? `auth/token/create/${v.token_role}` : 'auth/token/create', 'update');
          paths.set('auth/token/revoke-accessor', 'update');
          paths.set('auth/token/renew-accessor', 'update');
        }
      }
      if (paths.size === 0) return { ok: true, missing: [] };
      const res = await session.run((c) => c.write('sys/capabilities-self', { paths: [...paths.keys()] }));
      const missing = [...paths].flatMap(([path, capability]) => {
        const caps: string[] = res?.[path] ?? res?.data?.[path] ?? [];
        return caps.includes(capability) || caps.includes('root') || caps.includes('sudo') ? [] : [`${capability} on ${path}`];
      });
      if (missing.length) deps.log.warn({ backend: deps.name, missing }, "the broker's Vault token lacks permissions");
      return { ok: missing.length === 0, missing };
    },
  };
}
