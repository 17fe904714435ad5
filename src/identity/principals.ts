import type { PrincipalConfig } from '../config/schema.js';
import { digestsEqual, sha256Hex } from '../ids.js';
import { compileRule, type IdentityMatcher } from './match.js';
import { actorOf, AuthError, type Identity } from './types.js';
import type { TokenVerifier } from './verifier.js';

/** Who is calling, and what they may act as. */
export interface Principal {
  /** Stable actor name for audit rows and task ownership: `issuer/subject` or `static:name`. */
  actor: string;
  /** Present for OIDC callers; static-token principals have none (and so can never be agents). */
  identity?: Identity;
  admin: boolean;
  orchestrator: boolean;
  /** Label sets of tasks this orchestrator may act on besides its own. */
  scopes: Record<string, string>[];
}

type Scope = Record<string, string> | undefined;

interface CompiledPrincipals {
  staticTokens: { name: string; sha256: string; kind: 'admin' | 'orchestrator'; scope: Scope }[];
  admin: { match: IdentityMatcher; scope: Scope }[];
  orchestrator: { match: IdentityMatcher; scope: Scope }[];
}

function compile(config: { admins: PrincipalConfig[]; orchestrators: PrincipalConfig[] }): CompiledPrincipals {
  const out: CompiledPrincipals = { staticTokens: [], admin: [], orchestrator: [] };
  for (const [kind, list] of [
    ['admin', config.admins],
    ['orchestrator', config.orchestrators],
  ] as const) {
    for (const p of list) {
      if ('token_sha256' in p) out.staticTokens.push({ name: p.name, sha256: p.token_sha256, kind, scope: p.scope?.labels });
      else out[kind].push({ match: compileRule(p), scope: p.scope?.labels });
    }
  }
  return out;
}

const looksLikeJwt = (token: string) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);

export interface Authenticator {
  authenticate(bearer: string): Promise<Principal>;
  /** The principal of an identity verified elsewhere (a console session): matched exactly as a bearer's would be. */
  principalOf(identity: Identity): Principal;
}

export function createAuthenticator(
  verifier: TokenVerifier,
  config: { admins: PrincipalConfig[]; orchestrators: PrincipalConfig[] },
): Authenticator {
  const compiled = compile(config);
  function principalOf(identity: Identity): Principal {
    // Loops, not filter/some over matchers: see matchAll (identity/match.ts).
    const orchestrators: typeof compiled.orchestrator = [];
    for (const o of compiled.orchestrator) if (o.match(identity)) orchestrators.push(o);
    let admin = false;
    for (const a of compiled.admin) admin ||= a.match(identity);
    return {
      actor: actorOf(identity),
      identity,
      admin,
      orchestrator: orchestrators.length > 0,
      scopes: orchestrators.flatMap((o) => (o.scope ? [o.scope] : [])),
    };
  }
  return {
    principalOf,
    async authenticate(bearer) {
      if (!looksLikeJwt(bearer)) {
        // Compare against every configured hash, in constant time each, so timing says nothing.
        const digest = sha256Hex(bearer);
        const found = compiled.staticTokens.filter((entry) => digestsEqual(digest, entry.sha256));
        if (found.length === 0) throw new AuthError('token_invalid', 'the bearer token is not valid');
        return {
          actor: `static:${found[0]!.name}`,
          admin: found.some((e) => e.kind === 'admin'),
          orchestrator: found.some((e) => e.kind === 'orchestrator'),
          scopes: found.flatMap((e) => (e.kind === 'orchestrator' && e.scope ? [e.scope] : [])),
        };
      }
      return principalOf(await verifier.verify(bearer));
    },
  };
}
