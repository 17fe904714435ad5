/** The fake's in-memory world and what a route handler is given. */
import type { Policies } from './acl.js';
import type {
  AppRoleOptions,
  DynamicRoleOptions,
  FakeLease,
  FakeToken,
  JwtRoleOptions,
  TokenRoleOptions,
  VaultFakeClock,
} from './types.js';

/** Vault's system default and maximum lease TTL (768h), which every mount inherits unless tuned. */
export const SYSTEM_DEFAULT_TTL = 768 * 3600;
export const SYSTEM_MAX_TTL = 768 * 3600;

export interface State {
  clock: VaultFakeClock;
  /** Namespace path → its id (the suffix Vault appends to its tokens, accessors and lease ids); '' → 'root'. */
  namespaces: Map<string, string>;
  policies: Policies;
  dynamicRoles: DynamicRoleOptions[];
  tokenRoles: TokenRoleOptions[];
  approles: AppRoleOptions[];
  jwtRoles: JwtRoleOptions[];
  leases: Map<string, FakeLease>;
  tokens: Map<string, FakeToken>;
  /** Token → accessor. */
  byToken: Map<string, string>;
  legacyRevokeAccessor: boolean;
  /** Secrets engines (by mount) whose next revocations fail inside the engine: how many more, and the engine's error. */
  engineRevokeFailures: Map<string, { left: number; cause: string }>;
}

export interface Ctx {
  method: string;
  /** Relative to the namespace, no `/v1/`, no query. */
  path: string;
  namespace: string;
  query: URLSearchParams;
  body: Record<string, unknown>;
  now: Date;
  /** The calling token (already checked: alive, allowed on this path). Unset on unauthenticated paths. */
  token?: FakeToken;
  /** The caller's capabilities on this path. */
  caps: string[];
  /** The path the caller's policies are matched against (a parent-namespace token sees `<child ns>/<path>`). */
  aclPath: (path: string) => string;
  /** Tokens to revoke once the answer is decided (used-up num_uses tokens). */
  after: (() => void)[];
}

/** What a handler answers: a JSON body (200), or an empty one with 204/202. */
export type Answer = { status: number; body?: unknown };

export const nsId = (state: State, ns: string): string => state.namespaces.get(ns) ?? 'root';

/** Vault appends `.<namespace id>` to ids made outside the root namespace. */
export const withNsSuffix = (state: State, id: string, ns: string): string => (ns ? `${id}.${nsId(state, ns)}` : id);
