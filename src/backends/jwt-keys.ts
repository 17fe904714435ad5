import { createPrivateKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';

interface StoredKey {
  kid: string;
  createdAt: number;
  publicJwk: JWK;
  privateKey: KeyObject;
}

export interface KeyStoreOptions {
  dir: string;
  clock: Clock;
  /** Sign with a new key once the newest is this old. */
  rotationSeconds: number;
  /** The longest a token may live: a retired key stays published this long after its successor appears. */
  maxTokenTtlSeconds: number;
}

export interface SigningKeyStore {
  /** The key to sign with now; rotates first when the newest key is due. */
  signingKey(): Promise<{ kid: string; key: KeyObject }>;
  /** Public keys of every key whose tokens may still be live. */
  jwks(): Promise<{ keys: JWK[] }>;
  /** The published keys as a jose key resolver, rebuilt only when the set changes (introspection's hot path). */
  keyResolver(): Promise<JWTVerifyGetKey>;
}

const FILE_RE = /^(\d{13})-([A-Za-z0-9_-]+)\.json$/;
const RELOAD_MS = 60_000;
const PUBLISH_LEAD_MS = 6 * 60_000;

/** The keys stored under `dir`, oldest first. */
function readKeys(dir: string): StoredKey[] {
  const found: StoredKey[] = [];
  for (const file of readdirSync(dir)) {
    const match = FILE_RE.exec(file);
    if (!match) continue;
    const privateJwk = JSON.parse(readFileSync(join(dir, file), 'utf8')) as JWK;
    const { d: _d, ...publicJwk } = privateJwk;
    found.push({
      kid: match[2]!,
      createdAt: Number(match[1]),
      publicJwk: { ...publicJwk, kid: match[2]!, alg: 'ES256', use: 'sig' },
      privateKey: createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' }),
    });
  }
  return found.sort((a, b) => a.createdAt - b.createdAt);
}

/**
 * The public keys stored under `dir`, as the broker publishes them, read
 * without creating, rotating or pruning any (an empty set when there are none).
 */
export function readPublishedKeys(dir: string): { keys: JWK[] } {
  if (!existsSync(dir)) return { keys: [] };
  return { keys: readKeys(dir).map((k) => k.publicJwk) };
}

/** The key store options the broker runs with: every process that signs for it must use the same. */
export function brokerKeyStoreOptions(config: Config, clock: Clock): KeyStoreOptions {
  const jwtRotations = Object.values(config.backends).flatMap((b) => (b.type === 'jwt' ? [b.key_rotation] : []));
  return {
    dir: join(config.data_dir, 'keys'),
    clock,
    rotationSeconds: Math.min(7 * 86400, ...jwtRotations),
    maxTokenTtlSeconds: Math.max(3600, ...config.roles.map((r) => r.max_ttl)),
  };
}

/**
 * ES256 signing keys persisted as files (mode 0600) under `dir`, one per key,
 * so every replica that mounts the directory signs and publishes the same set.
 * Private keys never go to the database.
 */
export async function createSigningKeyStore(options: KeyStoreOptions): Promise<SigningKeyStore> {
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  // Relying parties cache the JWKS (max-age 300 s) and replicas reload keys every 60 s: publish this long ahead.
  const leadMs = Math.min(PUBLISH_LEAD_MS, (options.rotationSeconds * 1000) / 2);
  let keys: StoredKey[] = [];
  let loadedAt = 0;
  let resolver: JWTVerifyGetKey | undefined;

  async function load(): Promise<void> {
    keys = readKeys(options.dir);
    resolver = createLocalJWKSet({ keys: keys.map((k) => k.publicJwk) });
    loadedAt = options.clock.now().getTime();
  }

  async function create(now: number): Promise<void> {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(privateKey);
    const kid = `${now.toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    writeFileSync(join(options.dir, `${now}-${kid}.json`), JSON.stringify(jwk), { mode: 0o600, flag: 'wx' });
  }

  /** Deletes keys whose every token has expired: the next key has signed for longer than the max TTL. */
  function prune(now: number): void {
    for (let i = 0; i < keys.length - 1; i++) {
      const key = keys[i]!;
      const successorSigningSince = keys[i + 1]!.createdAt + leadMs;
      if (successorSigningSince + (options.maxTokenTtlSeconds + 60) * 1000 < now) {
        rmSync(join(options.dir, `${key.createdAt}-${key.kid}.json`), { force: true });
      }
    }
  }

  /** A new key is made `lead` before it is needed, so it is published (and cached by relying parties) before it signs. */
  const dueForNext = (now: number) => {
    const newest = keys.at(-1);
    return !newest || newest.createdAt + options.rotationSeconds * 1000 - leadMs <= now;
  };

  async function refresh(): Promise<void> {
    const now = options.clock.now().getTime();
    if (dueForNext(now) || now - loadedAt > RELOAD_MS) await load();
    if (dueForNext(now)) {
      await create(now);
      prune(now);
      await load();
    }
  }

  /** The newest key that has been published for at least `lead`; on a first start, the only key there is. */
  function signer(now: number): StoredKey {
    const ready = keys.filter((k) => k.createdAt + leadMs <= now);
    return ready.at(-1) ?? keys[0]!;
  }

  await refresh();
  return {
    async signingKey() {
      await refresh();
      const key = signer(options.clock.now().getTime());
      return { kid: key.kid, key: key.privateKey };
    },
    async keyResolver() {
      await refresh();
      return resolver!;
    },
    async jwks() {
      await refresh();
      return { keys: keys.map((k) => k.publicJwk) };
    },
  };
}
