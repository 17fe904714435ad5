/**
 * A protocol-faithful stand-in for HashiCorp Vault, for tests: one HTTP
 * server on 127.0.0.1 speaking Vault's v1 JSON API (the response envelope,
 * `{"errors": [...]}` with Vault's statuses and wording, X-Vault-Token or
 * `Authorization: Bearer`, X-Vault-Namespace) for the endpoints the broker
 * uses: sys/health; dynamic secrets at `<mount>/creds/<role>` (database and
 * AWS); sys/leases/{lookup,renew,revoke,revoke-prefix}; auth/token/{create,
 * create-orphan, create/<role>, lookup, lookup-self, lookup-accessor, renew,
 * renew-self, renew-accessor, revoke, revoke-self, revoke-accessor}; AppRole,
 * JWT and Kubernetes login; sys/capabilities-self. Point node-vault at `url`.
 *
 * Behaviour taken from Vault (docs and source), which tests may rely on:
 * - ACL: policies merged path by path; the most specific policy path decides
 *   (exact, `*` prefix glob, `+` segment); POST/PUT need `update`, GET `read`.
 *   Tokens get Vault's `default` policy (lookup-self is `read` only: a POST
 *   to it is an update and is denied without `update`).
 * - 403 bodies: no token → "permission denied"; unknown/expired/revoked/used
 *   up token → "2 errors occurred: permission denied, invalid token"; policy
 *   refusal → "1 error occurred: permission denied".
 * - sys/leases/revoke: 204 for any lease id, known or not, already revoked or
 *   not; `sync` defaults to true on the server, sync:false answers 202 (which
 *   node-vault treats as an error); a missing lease_id is a 400. A revocation
 *   that fails inside the secrets engine (`failRevocations`) is a 400
 *   `failed to revoke entry: resp: (*logical.Response)(nil) err: <engine's
 *   error>` and leaves the lease in place (vault/expiration.go revokeEntry,
 *   logical_system.go handleRevoke; the same in OpenBao).
 * - Renewal (leases and tokens) follows framework.CalculateTTL: the increment,
 *   else the role's TTL (a token's previous grant), capped at issue + max TTL
 *   with Vault's warning; renewing a revoked or expired lease is 400 "lease not
 *   found".
 * - Revoking a token revokes its child tokens and every lease it read; an
 *   expired or revoked parent makes its children invalid. num_uses counts
 *   every request made with the token; the last use revokes it afterwards.
 * - revoke-accessor for a gone accessor is 204 (Vault ≥ 1.10; option
 *   `legacyRevokeAccessor` gives the older 400 "invalid accessor").
 * - Namespaces: ids minted inside one carry `.<namespace id>` as in Vault; a
 *   token works in its namespace and its children (policies then match
 *   `<child>/<path>`), the root token everywhere.
 *
 * Known departures from Vault:
 * - No timers: nothing expires in the background. Expiry is judged against
 *   `clock` when a request arrives; `revoked` on records means revoked (API,
 *   parent, lease owner, num_uses), never merely expired (see leaseLive /
 *   tokenLive).
 * - JWT/Kubernetes logins check only that the JWT payload's `sub` equals the
 *   role's subject: no signature, issuer, audience or expiry check.
 * - Policies are global (the same names in every namespace); roles, mounts
 *   and logins belong to one namespace (default root). An unknown namespace
 *   is 404 {"errors":["namespace not found"]} (Enterprise's exact answer was
 *   not confirmed).
 * - Service tokens only (no batch tokens, periods or entity/identity), no
 *   response wrapping, no cubbyhole or KV; secrets are random strings that
 *   mean nothing to any database or AWS.
 * - Login-method error wording (JWT, Kubernetes) is modelled, not captured.
 * - Token roles: an empty allowedPolicies allows only 'default' (Vault would
 *   fall back to the parent's policies); no period, bound CIDRs or
 *   disallowed_policies. Display names, usernames and keys are Vault-shaped
 *   random strings.
 * - Tokens work on the self endpoints (lookup-self, renew-self, revoke-self)
 *   from any namespace they are in scope for; Vault refuses to renew a token
 *   across namespaces.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { allows, capabilitiesOn } from './vault-fake/acl.js';
import { leaseLive } from './vault-fake/leases.js';
import { findRoute, operationOf } from './vault-fake/routes.js';
import type { Answer, Ctx, State } from './vault-fake/state.js';
import { healthBody } from './vault-fake/sys.js';
import { findByToken, issueToken, revokeToken, tokenAlive } from './vault-fake/tokens.js';
import type { FakeCall, VaultFake, VaultFakeOptions } from './vault-fake/types.js';
import { base62, invalidToken, noToken, normalizeNamespace, permissionDenied, VaultHttpError, multi } from './vault-fake/util.js';
import { listenLocal } from './listen.js';

export type * from './vault-fake/types.js';

/** What the database secrets engine's revocation says when its database cannot be reached (pgx's wording). */
const DEFAULT_ENGINE_ERROR = 'failed to connect to `user=vault database=postgres`: dial error (dial tcp 127.0.0.1:5432: connect: connection refused)';

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.setHeader('Cache-Control', 'no-store');
  if (body === undefined || status === 204) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
}

export async function startVaultFake(options: VaultFakeOptions = {}): Promise<VaultFake> {
  const clock = options.clock ?? { now: () => new Date() };
  const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const state: State = {
    clock,
    namespaces: new Map([['', 'root'], ...(options.namespaces ?? []).map((n) => [normalizeNamespace(n), base62(5)] as [string, string])]),
    policies: options.policies ?? {},
    dynamicRoles: options.dynamicRoles ?? [],
    tokenRoles: options.tokenRoles ?? [],
    approles: list(options.approle),
    jwtRoles: list(options.jwtRoles),
    leases: new Map(),
    tokens: new Map(),
    byToken: new Map(),
    legacyRevokeAccessor: options.legacyRevokeAccessor ?? false,
    engineRevokeFailures: new Map(),
  };
  const root = issueToken(state, { policies: ['root'], ttl: 0, displayName: 'root', path: 'auth/token/root', namespace: '' }, clock.now()).token;
  if (options.rootToken) {
    state.byToken.delete(root.token);
    root.token = options.rootToken;
    state.byToken.set(root.token, root.accessor);
  }
  const calls: FakeCall[] = [];
  const failures: { prefix: string; status: number; left: number; errors?: string[] }[] = [];

  /** Split a child namespace given as a path prefix (`/v1/ns1/secret/x`) off the path. */
  function resolveNamespace(header: string, path: string): { namespace: string; path: string } {
    let namespace = header;
    let rest = path;
    for (const ns of [...state.namespaces.keys()].sort((a, b) => b.length - a.length)) {
      const rel = namespace ? (ns.startsWith(`${namespace}/`) ? ns.slice(namespace.length + 1) : undefined) : ns || undefined;
      if (rel && rest.startsWith(`${rel}/`)) {
        namespace = ns;
        rest = rest.slice(rel.length + 1);
        break;
      }
    }
    return { namespace, path: rest };
  }

  async function handle(req: IncomingMessage, ctxOut: { call?: FakeCall }): Promise<Answer> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = (req.method ?? 'GET').toUpperCase();
    const rawPath = decodeURIComponent(url.pathname).replace(/^\/v1\//, '').replace(/\/+$/, '');
    const header = normalizeNamespace(req.headers['x-vault-namespace'] as string | undefined);
    const text = await readBody(req);
    const { namespace, path } = state.namespaces.has(header) ? resolveNamespace(header, rawPath) : { namespace: header, path: rawPath };
    let body: Record<string, unknown> = {};
    const call: FakeCall = { method, path, namespace, status: 0 };
    ctxOut.call = call;
    const now = clock.now();

    const failure = failures.find((f) => path.startsWith(f.prefix) && f.left > 0);
    if (failure) {
      failure.left -= 1;
      if (path === 'sys/health') return { status: failure.status, body: method === 'HEAD' ? undefined : healthBody(now, failure.status) };
      const msg = failure.errors ?? [failure.status === 503 ? 'Vault is sealed' : failure.status === 429 ? 'request path "' + path + '": rate limit quota exceeded' : 'internal error'];
      throw new VaultHttpError(failure.status, msg);
    }
    if (!url.pathname.startsWith('/v1/')) throw new VaultHttpError(404, []);
    if (!state.namespaces.has(header)) throw new VaultHttpError(404, ['namespace not found']);
    if (text.trim()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw new VaultHttpError(400, [`failed to parse JSON input: ${(err as Error).message}`]);
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new VaultHttpError(400, ['failed to parse JSON input: not an object']);
      body = parsed as Record<string, unknown>;
      call.body = body;
    }

    const found = findRoute(state, path, namespace);
    const ctx: Ctx = { method, path, namespace, query: url.searchParams, body, now, caps: [], after: [], aclPath: (p) => p };
    const aclPathFor = (ns: string) => (p: string) => {
      const rel = ns === namespace ? '' : namespace.slice(ns ? ns.length + 1 : 0);
      return rel ? `${rel}/${p}` : p;
    };
    if (!found?.route.unauthenticated) {
      const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const id = (req.headers['x-vault-token'] as string | undefined) || bearer;
      if (!id) throw noToken();
      const t = findByToken(state, id);
      if (!t || !tokenAlive(state, t, now)) throw invalidToken();
      call.tokenAccessor = t.accessor;
      // Every request spends one of a limited token's uses; the last one revokes it once answered.
      if (t.numUses === 1) {
        t.numUses = -1;
        ctx.after.push(() => revokeToken(state, t, clock.now()));
      } else if (t.numUses > 1) t.numUses -= 1;
      const inScope = t.namespace === '' || t.namespace === namespace || namespace.startsWith(`${t.namespace}/`);
      if (!inScope && !t.policies.includes('root')) throw permissionDenied();
      ctx.aclPath = aclPathFor(t.namespace);
      ctx.token = t;
      ctx.caps = capabilitiesOn(t.policies, state.policies, ctx.aclPath(path));
      if (!allows(ctx.caps, operationOf(method, url.searchParams))) throw permissionDenied();
    }
    if (!found) throw new VaultHttpError(404, [`no handler for route "${path}". route entry not found.`]);
    if (!found.route.methods.includes(method)) throw new VaultHttpError(405, [multi('unsupported operation')]);
    try {
      return found.route.handler(state, ctx, found.m);
    } finally {
      for (const f of ctx.after) f();
    }
  }

  const server = createServer((req, res) => {
    const out: { call?: FakeCall } = {};
    handle(req, out)
      .then(
        (answer) => answer,
        (err: unknown): Answer => {
          if (err instanceof VaultHttpError) return { status: err.status, body: { errors: err.errors } };
          return { status: 500, body: { errors: [multi(`internal error: ${(err as Error)?.message ?? String(err)}`)] } };
        },
      )
      .then((answer) => {
        if (out.call) {
          out.call.status = answer.status;
          calls.push(out.call);
        }
        send(res, answer.status, answer.body);
      });
  });
  const port = await listenLocal(server);

  return {
    url: `http://127.0.0.1:${port}`,
    rootToken: root.token,
    leases: state.leases,
    tokens: state.tokens,
    calls,
    createToken(opts) {
      const namespace = normalizeNamespace(opts.namespace);
      if (!state.namespaces.has(namespace)) throw new Error(`vault fake: namespace '${opts.namespace}' is not configured`);
      const { token } = issueToken(
        state,
        {
          policies: opts.policies,
          ttl: opts.ttl,
          explicitMaxTtl: opts.explicitMaxTtl ?? 0,
          numUses: opts.numUses ?? 0,
          renewable: opts.renewable ?? true,
          meta: opts.meta ?? {},
          noDefaultPolicy: opts.noDefaultPolicy ?? false,
          path: 'auth/token/create',
          namespace,
          ...(namespace === '' ? { parent: root } : {}),
        },
        clock.now(),
      );
      return { token: token.token, accessor: token.accessor };
    },
    failNext(pathPrefix, status, times = 1, errors) {
      failures.push({ prefix: pathPrefix.replace(/^\/?(v1\/)?/, ''), status, left: times, ...(errors ? { errors } : {}) });
    },
    failRevocations(mount, times = 1, cause = DEFAULT_ENGINE_ERROR) {
      state.engineRevokeFailures.set(mount.replace(/^\/+|\/+$/g, ''), { left: times, cause });
    },
    leaseLive(leaseId) {
      const lease = state.leases.get(leaseId);
      return !!lease && leaseLive(state, lease, clock.now());
    },
    tokenLive(accessor) {
      const t = state.tokens.get(accessor);
      return !!t && tokenAlive(state, t, clock.now());
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
