import { readFileSync } from 'node:fs';
import vault from 'node-vault';
import type { Clock } from '../clock.js';
import type { VaultBackendConfig } from '../config/vault.js';
import type { Logger } from '../log.js';

export type VaultClient = vault.client;

/** The HTTP status node-vault saw, if the error came from Vault. */
export const vaultStatus = (err: unknown): number | undefined => (err as { response?: { statusCode?: number } })?.response?.statusCode;
/** Vault's first error message (never holds a secret: Vault does not echo tokens). */
export const vaultMessage = (err: unknown): string => String((err as Error)?.message ?? '').slice(0, 200);

/**
 * The broker's own Vault login. It logs in lazily, renews its token once two
 * thirds of its TTL have passed, logs in again when renewal fails, and runs
 * an operation again once after logging in if Vault refused the token (an
 * expired or revoked broker token is not a failed request).
 */
export function createVaultSession(config: VaultBackendConfig, clock: Clock, log: Logger) {
  const ca = config.ca_file ? readFileSync(config.ca_file) : undefined;
  const client = vault({
    apiVersion: 'v1',
    endpoint: config.address,
    ...(config.namespace ? { namespace: config.namespace } : {}),
    requestOptions: { timeout: config.request_timeout * 1000, ...(ca ? { ca } : {}) },
  });
  let renewAt = 0;
  let expiresAt = 0;
  let renewable = false;
  let loggingIn: Promise<void> | undefined;

  function adopt(auth: { client_token?: string; lease_duration?: number; renewable?: boolean } | undefined, token?: string) {
    if (token ?? auth?.client_token) client.token = (token ?? auth?.client_token)!;
    const ttl = auth?.lease_duration ?? 0;
    const now = clock.now().getTime();
    renewable = !!auth?.renewable && ttl > 0;
    expiresAt = ttl > 0 ? now + ttl * 1000 : Infinity;
    renewAt = ttl > 0 ? now + (ttl * 1000 * 2) / 3 : Infinity;
  }

  async function login(): Promise<void> {
    const auth = config.auth;
    const read = (file: string) => readFileSync(file, 'utf8').trim();
    if (auth.method === 'token') {
      client.token = read(auth.token_file);
      const self = await client.read('auth/token/lookup-self');
      adopt({ lease_duration: self?.data?.ttl, renewable: self?.data?.renewable });
    } else if (auth.method === 'approle') {
      const res = await client.write(`auth/${auth.mount}/login`, { role_id: read(auth.role_id_file), secret_id: read(auth.secret_id_file) });
      adopt(res?.auth);
    } else {
      const res = await client.write(`auth/${auth.mount}/login`, { role: auth.role, jwt: read(auth.jwt_file) });
      adopt(res?.auth);
    }
    log.info({ method: auth.method }, 'logged in to Vault');
  }

  function relogin(): Promise<void> {
    loggingIn ??= login().finally(() => {
      loggingIn = undefined;
    });
    return loggingIn;
  }

  /** A client whose token is valid for a while yet. */
  async function ready(): Promise<VaultClient> {
    const now = clock.now().getTime();
    if (!client.token || now >= expiresAt) await relogin();
    else if (now >= renewAt) {
      if (!renewable) await relogin();
      else {
        renewAt = Infinity; // one renewal at a time
        try {
          adopt(((await client.write('auth/token/renew-self', {})) as { auth?: { lease_duration?: number; renewable?: boolean } })?.auth);
        } catch (err) {
          // Vault refused the token: log in again. Vault unavailable: keep the token and try again shortly.
          if (vaultStatus(err) === 403) await relogin();
          else {
            renewAt = clock.now().getTime() + 15_000;
            throw err;
          }
        }
      }
    }
    return client;
  }

  return {
    /**
     * Renews (or re-acquires) the broker's token when it is due. Called on
     * every sweeper pass: Vault revokes the leases a token read when that
     * token expires, so the broker's token must never lapse while it holds any.
     */
    async keepAlive(): Promise<void> {
      await ready();
    },
    /** Runs `op` with a ready client; if Vault says the broker's token is no good, logs in again and retries once. */
    async run<T>(op: (c: VaultClient) => Promise<T>): Promise<T> {
      const c = await ready();
      const used = c.token;
      try {
        return await op(c);
      } catch (err) {
        if (vaultStatus(err) !== 403) throw err;
        // Another call logged in again meanwhile: this 403 was for the old token.
        if (client.token !== used) return op(client);
        const self = await c.read('auth/token/lookup-self').catch(() => undefined);
        if (self) throw err; // our token is fine: this is a real permission problem
        await relogin();
        return op(client);
      }
    },
  };
}
export type VaultSession = ReturnType<typeof createVaultSession>;
