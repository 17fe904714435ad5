/** Which handler answers a path, and which ACL operation a method is. */
import type { Operation } from './acl.js';
import { approleLogin, approleMounts, jwtLogin, jwtMounts } from './auth.js';
import { lookupLease, readCreds, renewLease, revokeLease, revokePrefix } from './leases.js';
import type { Answer, Ctx, State } from './state.js';
import { capabilitiesSelf, health } from './sys.js';
import * as tok from './token-routes.js';
import { normalizeNamespace } from './util.js';

export type Handler = (state: State, ctx: Ctx, m: RegExpMatchArray) => Answer;
export interface Route {
  re: RegExp;
  methods: string[];
  handler: Handler;
  /** Login and health paths take no token. */
  unauthenticated?: boolean;
}

const WRITE = ['POST', 'PUT'];
const ROUTES: Route[] = [
  { re: /^sys\/health$/, methods: ['GET', 'HEAD'], handler: health, unauthenticated: true },
  { re: /^sys\/capabilities-self$/, methods: WRITE, handler: capabilitiesSelf },
  { re: /^sys\/leases\/lookup$/, methods: WRITE, handler: lookupLease },
  { re: /^sys\/(?:leases\/)?renew(?:\/(.+))?$/, methods: WRITE, handler: (s, c, m) => renewLease(s, c, m[1] ?? '') },
  { re: /^sys\/(?:leases\/)?revoke(?:\/(.+))?$/, methods: WRITE, handler: (s, c, m) => revokeLease(s, c, m[1] ?? '') },
  { re: /^sys\/(?:leases\/)?revoke-prefix\/(.+)$/, methods: WRITE, handler: (s, c, m) => revokePrefix(s, c, m[1]!) },
  { re: /^auth\/token\/create$/, methods: WRITE, handler: (s, c) => tok.createToken(s, c, {}) },
  { re: /^auth\/token\/create-orphan$/, methods: WRITE, handler: (s, c) => tok.createToken(s, c, { orphanPath: true }) },
  { re: /^auth\/token\/create\/([^/]+)$/, methods: WRITE, handler: (s, c, m) => tok.createToken(s, c, { role: m[1]! }) },
  { re: /^auth\/token\/lookup-self$/, methods: ['GET', ...WRITE], handler: tok.lookupSelf },
  { re: /^auth\/token\/lookup$/, methods: WRITE, handler: tok.lookup },
  { re: /^auth\/token\/lookup-accessor$/, methods: WRITE, handler: tok.lookupAccessor },
  { re: /^auth\/token\/renew-self$/, methods: WRITE, handler: tok.renewSelf },
  { re: /^auth\/token\/renew$/, methods: WRITE, handler: tok.renew },
  { re: /^auth\/token\/renew-accessor$/, methods: WRITE, handler: tok.renewAccessor },
  { re: /^auth\/token\/revoke-self$/, methods: WRITE, handler: tok.revokeSelf },
  { re: /^auth\/token\/revoke$/, methods: WRITE, handler: tok.revoke },
  { re: /^auth\/token\/revoke-accessor$/, methods: WRITE, handler: tok.revokeAccessor },
];

export function operationOf(method: string, query: URLSearchParams): Operation {
  if (method === 'LIST' || (method === 'GET' && query.get('list') === 'true')) return 'list';
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'DELETE') return 'delete';
  if (method === 'PATCH') return 'patch';
  return 'update';
}

/** The route for a path in a namespace: fixed endpoints, then configured login mounts and secrets engines. */
export function findRoute(state: State, path: string, namespace: string): { route: Route; m: RegExpMatchArray } | undefined {
  for (const route of ROUTES) {
    const m = path.match(route.re);
    if (m) return { route, m };
  }
  const login = path.match(/^auth\/([^/]+)\/login$/);
  if (login) {
    const mount = login[1]!;
    if (approleMounts(state, namespace).has(mount)) return { route: { re: /./, methods: WRITE, unauthenticated: true, handler: (s, c) => approleLogin(s, c, mount) }, m: login };
    if ((mount === 'jwt' || mount === 'kubernetes') && jwtMounts(state, namespace).has(mount))
      return { route: { re: /./, methods: WRITE, unauthenticated: true, handler: (s, c) => jwtLogin(s, c, mount) }, m: login };
  }
  const creds = path.match(/^(.+)\/creds\/([^/]+)$/);
  if (creds) {
    const mount = creds[1]!;
    const kind = state.dynamicRoles.find((r) => r.mount === mount && normalizeNamespace(r.namespace) === namespace)?.kind;
    if (kind) return { route: { re: /./, methods: kind === 'aws' ? ['GET', ...WRITE] : ['GET'], handler: (s, c) => readCreds(s, c, mount, creds[2]!) }, m: creds };
  }
  return undefined;
}
