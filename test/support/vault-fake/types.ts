/** The Vault fake's options and the records it exposes to tests. */

export interface VaultFakeClock {
  now(): Date;
}

export interface DynamicRoleOptions {
  /** Mount path of the secrets engine, e.g. 'database' or 'aws' (or any other name). */
  mount: string;
  role: string;
  kind: 'database' | 'aws';
  /** Seconds; the lease's TTL at issue and on a renewal without an increment (0: Vault's system default, 768h). */
  defaultTtl: number;
  /** Seconds; no lease outlives issue time + maxTtl (0: Vault's system max, 768h). */
  maxTtl: number;
  /** Namespace the role (and its mount) lives in; default root. */
  namespace?: string;
  /**
   * AWS only. 'iam_user' (default, as Vault's default role type): security_token is null and
   * the lease renewable. 'assumed_role': an STS session, security_token set, lease NOT renewable.
   */
  credentialType?: 'iam_user' | 'assumed_role';
}

export interface TokenRoleOptions {
  name: string;
  /** Policies a token created against the role may carry (also its policies when the request names none). */
  allowedPolicies: string[];
  /** Seconds; caps the TTL of the role's tokens, at creation and renewal. */
  maxTtl?: number;
  /** Tokens from this role have no parent (role `orphan=true`); default false. */
  orphan?: boolean;
  /** Tokens from this role may be renewed; default true. */
  renewable?: boolean;
  namespace?: string;
}

export interface AppRoleOptions {
  roleId: string;
  secretId: string;
  policies: string[];
  /** Seconds: the login token's TTL (token_ttl). */
  ttl: number;
  /** Seconds (token_max_ttl); default Vault's system max, 768h. */
  maxTtl?: number;
  namespace?: string;
  /** auth mount; default 'approle'. */
  mount?: string;
  /** Reported as auth.metadata.role_name; default 'broker'. */
  roleName?: string;
}

export interface JwtRoleOptions {
  /** 'jwt' (the JWT/OIDC method) or 'kubernetes'. The mount path is the same name. */
  mount: 'jwt' | 'kubernetes';
  role: string;
  /**
   * The `sub` claim a JWT must carry to log in with this role. No signature, issuer, audience or
   * expiry is checked: any JWT-shaped string whose payload has this `sub` is accepted. For
   * 'kubernetes', use the service account's subject `system:serviceaccount:<ns>:<name>`.
   */
  subject: string;
  policies: string[];
  /** Seconds: the login token's TTL. */
  ttl: number;
  maxTtl?: number;
  namespace?: string;
}

export interface VaultFakeOptions {
  /** Token and lease times (issue, expiry, renewal caps); default the wall clock. */
  clock?: VaultFakeClock;
  /** Namespaces besides root (e.g. 'team-a', 'team-a/child'); a request names one with X-Vault-Namespace. */
  namespaces?: string[];
  /**
   * ACL policies: name → path → capabilities. Paths use Vault's policy syntax: 'sys/leases/revoke'
   * matches exactly that path, 'database/creds/*' is a prefix glob, '+' matches one segment.
   * 'root' is built in; 'default' is built in as Vault ships it unless given here.
   */
  policies?: Record<string, Record<string, string[]>>;
  dynamicRoles?: DynamicRoleOptions[];
  tokenRoles?: TokenRoleOptions[];
  approle?: AppRoleOptions | AppRoleOptions[];
  jwtRoles?: JwtRoleOptions | JwtRoleOptions[];
  /** A token with the root policy (all capabilities, every namespace, never expires); generated if absent. */
  rootToken?: string;
  /**
   * Answer revoke-accessor for an accessor that does not exist (or no longer) with Vault < 1.10's
   * 400 "invalid accessor" instead of today's idempotent 204.
   */
  legacyRevokeAccessor?: boolean;
}

export interface FakeLease {
  leaseId: string;
  /** The path the secret was read from, e.g. 'database/creds/readonly'. */
  path: string;
  issuedAt: Date;
  expiresAt: Date;
  maxExpiresAt: Date;
  /** Revoked through the API, or because the token that read it was revoked. Expiry alone does not set it. */
  revoked: boolean;
  revokedAt?: Date;
  renewals: number;
  /** '' for root. */
  namespace: string;
  renewable: boolean;
  /** The secret as issued (username/password, or access_key/secret_key/security_token). */
  data: Record<string, unknown>;
  /** Accessor of the token that read the secret: Vault revokes the lease with that token. */
  tokenAccessor: string;
  kind: 'database' | 'aws';
}

export interface FakeToken {
  accessor: string;
  /** The token itself (tests may call Vault with it). */
  token: string;
  /** As the token carries them: sorted, with 'default' unless it was refused. */
  policies: string[];
  meta: Record<string, string>;
  displayName: string;
  issuedAt: Date;
  /** Current expiry; the root token's is a date no clock reaches. */
  expiresAt: Date;
  /** No renewal goes past this (explicit_max_ttl / role / system max); absent for the root token. */
  maxExpiresAt?: Date;
  /** Uses left, 0 = unlimited; -1 once a limited token is used up (Vault's "tainted"). */
  numUses: number;
  renewable: boolean;
  /** Revoked through the API, used up, or revoked with its parent. Expiry alone does not set it. */
  revoked: boolean;
  revokedAt?: Date;
  /** '' for root. */
  namespace: string;
  parentAccessor?: string;
  /** Creation path, e.g. 'auth/token/create', 'auth/token/create/<role>', 'auth/approle/login'. */
  path: string;
  /** TTL at creation, seconds (0 for root). */
  creationTtl: number;
  explicitMaxTtl: number;
  tokenRole?: string;
  /** Has no parent. */
  orphan: boolean;
}

export interface FakeCall {
  method: string;
  /** Without `/v1/` and the query, e.g. 'sys/leases/revoke'. */
  path: string;
  /** '' for root. */
  namespace: string;
  status: number;
  /** The parsed JSON body, if any (tests may check what was asked for). */
  body?: unknown;
  /** Accessor of the token the request carried, when the fake knew it. */
  tokenAccessor?: string;
}

export interface VaultFake {
  /** http://127.0.0.1:<port> — pass as node-vault's `endpoint`. */
  url: string;
  rootToken: string;
  /** Every lease the fake issued, by lease id (live objects). */
  leases: Map<string, FakeLease>;
  /** Every token the fake issued, by accessor (live objects; includes the root token). */
  tokens: Map<string, FakeToken>;
  calls: FakeCall[];
  /** Mint a token directly, as an operator would for the broker (a root-created child token, with 'default'). */
  createToken(opts: {
    policies: string[];
    ttl: number;
    renewable?: boolean;
    namespace?: string;
    explicitMaxTtl?: number;
    numUses?: number;
    meta?: Record<string, string>;
    noDefaultPolicy?: boolean;
  }): { token: string; accessor: string };
  /**
   * Answer the next `times` (default 1) requests whose path starts with `pathPrefix` (no `/v1/`)
   * with `status`: 503 says {"errors":["Vault is sealed"]}, sys/health answers its own body.
   */
  failNext(pathPrefix: string, status: number, times?: number, errors?: string[]): void;
  /**
   * The secrets engine at `mount` fails its next `times` (default 1) revocations, as when its database
   * is down for a moment: sys/leases/revoke answers 400 `failed to revoke entry: ...` with `cause` as the
   * engine's error, and the lease stays live. A lease already gone still answers 204.
   */
  failRevocations(mount: string, times?: number, cause?: string): void;
  /** Is the lease usable now (not revoked, not expired, its token alive)? */
  leaseLive(leaseId: string): boolean;
  /** Is the token usable now (not revoked, not expired, not used up, parents alive)? */
  tokenLive(accessor: string): boolean;
  close(): Promise<void>;
}
