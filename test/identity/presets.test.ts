import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.js';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { anchoredPattern, compileRule } from '../../src/identity/match.js';
import { createAuthenticator } from '../../src/identity/principals.js';
import { AuthError } from '../../src/identity/types.js';
import { createTokenVerifier } from '../../src/identity/verifier.js';
import { createPolicy } from '../../src/policy/decide.js';

const clock = createManualClock(new Date());
const now = () => Math.floor(clock.now().getTime() / 1000);

/** Loads a shipped example and swaps its issuer's key source for keys this test holds. */
async function example(file: string, alg: 'RS256' | 'ES256') {
  const loaded = loadConfigFile(`examples/${file}`, {});
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg };
  const issuer = { ...loaded.issuers[0]!, jwks: { keys: [jwk] }, jwks_uri: undefined };
  const config: Config = { ...loaded, issuers: [issuer] };
  const verifier = createTokenVerifier({ issuers: config.issuers, defaultAudience: config.public_url, clock });
  const policy = createPolicy(config.roles);
  const sign = (claims: JWTPayload) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid: 'k1' })
      .setIssuer(issuer.issuer)
      .setAudience(issuer.audiences![0]!)
      .setIssuedAt(now())
      .setExpirationTime(now() + 600)
      .sign(privateKey);
  /** May this token hold `role` for a task bound to its own subject? */
  async function allowed(claims: JWTPayload, role: string): Promise<boolean | string> {
    try {
      const identity = await verifier.verify(await sign(claims));
      const task = { id: 't', agentIssuer: identity.issuer, agentSubject: identity.subject, roles: [role], status: 'open', labels: {}, createdBy: 'o', createdAt: clock.now(), deadline: new Date(clock.now().getTime() + 600_000) };
      return policy.decide({ identity, task: task as never, roleName: role, requestedTtl: undefined, now: clock.now() }).allow;
    } catch (err) {
      return (err as AuthError).code;
    }
  }
  return { config, verifier, allowed, sign };
}

describe('preset: kubernetes (examples/kubernetes.yaml)', () => {
  const sa = (ns: string, name: string, extra: JWTPayload = {}) => ({
    sub: `system:serviceaccount:${ns}:${name}`,
    'kubernetes.io': { namespace: ns, serviceaccount: { name, uid: 'u-1' }, pod: { name: 'p', uid: 'u-2' } },
    ...extra,
  });

  it('admits a service account of the agents namespace, by the nested namespace claim', async () => {
    const k8s = await example('kubernetes.yaml', 'RS256');
    expect(await k8s.allowed(sa('agents', 'reporter'), 'reports-api')).toBe(true);
  });

  it('refuses other namespaces, lookalike subjects, and tokens without the kubernetes.io claim', async () => {
    const k8s = await example('kubernetes.yaml', 'RS256');
    expect(await k8s.allowed(sa('default', 'reporter'), 'reports-api')).toBe(false);
    expect(await k8s.allowed({ ...sa('agents', 'reporter'), 'kubernetes.io': { namespace: 'default' } }, 'reports-api')).toBe(false);
    expect(await k8s.allowed({ sub: 'system:serviceaccount:agents:reporter' }, 'reports-api')).toBe('token_invalid');
    expect(await k8s.allowed(sa('agents', 'reporter:x'), 'reports-api')).toBe(false);
  });

  it('refuses a token older than max_token_age', async () => {
    const k8s = await example('kubernetes.yaml', 'RS256');
    const token = await k8s.sign(sa('agents', 'reporter'));
    clock.advance(3601);
    await expect(k8s.verifier.verify(token)).rejects.toMatchObject({ code: expect.stringMatching(/^token_/) });
  });
});

describe('preset: github-actions (examples/github-actions.yaml)', () => {
  const gha = (ref: string, workflowRef: string, repository = 'example-org/web') => ({
    sub: `repo:${repository}:ref:${ref}`,
    repository,
    repository_owner: repository.split('/')[0],
    ref,
    job_workflow_ref: workflowRef,
  });
  const wf = 'example-org/workflows/.github/workflows/agent.yml@refs/heads/main';

  it('admits main of the repository through the platform workflow', async () => {
    const gh = await example('github-actions.yaml', 'RS256');
    expect(await gh.allowed(gha('refs/heads/main', wf), 'deploy-preview')).toBe(true);
    expect(await gh.allowed(gha('refs/heads/main', wf.replace('@refs/heads/main', '@refs/heads/release/v3')), 'deploy-preview')).toBe(true);
  });

  it('refuses main-attacker, other repositories and other workflows (GHSA-mwqh-2vg8-rhj3 class)', async () => {
    const gh = await example('github-actions.yaml', 'RS256');
    expect(await gh.allowed(gha('refs/heads/main-attacker', wf), 'deploy-preview')).toBe(false);
    expect(await gh.allowed(gha('refs/heads/main', `${wf}-attacker`), 'deploy-preview')).toBe(false);
    expect(await gh.allowed(gha('refs/heads/main', wf.replace('agent.yml', 'agentXyml')), 'deploy-preview')).toBe(false);
    expect(await gh.allowed(gha('refs/heads/main', wf, 'example-org/web-fork'), 'deploy-preview')).toBe(false);
    const { job_workflow_ref: _omit, ...withoutWorkflow } = gha('refs/heads/main', wf);
    expect(await gh.allowed(withoutWorkflow, 'deploy-preview')).toBe('token_invalid');
  });

  it('allows only RS256, as GitHub signs', async () => {
    const gh = await example('github-actions.yaml', 'RS256');
    expect(gh.config.issuers[0]!.algorithms).toEqual(['RS256']);
  });
});

describe('preset: spiffe (examples/spiffe.yaml)', () => {
  it('admits a JWT-SVID of the agents path', async () => {
    const sp = await example('spiffe.yaml', 'ES256');
    expect(await sp.allowed({ sub: 'spiffe://example.org/ns/agents/sa/reporter' }, 'ledger-read')).toBe(true);
    expect(await sp.allowed({ sub: 'spiffe://example.org/ns/agents/sa/reporter/x' }, 'ledger-read')).toBe(false);
    expect(await sp.allowed({ sub: 'spiffe://exampleXorg/ns/agents/sa/reporter' }, 'ledger-read')).toBe(false);
  });

  it('refuses a subject that is not a SPIFFE ID', async () => {
    const sp = await example('spiffe.yaml', 'ES256');
    expect(await sp.allowed({ sub: 'agents/reporter' }, 'ledger-read')).toBe('token_invalid');
  });

  it('requires audiences and only the JWT-SVID algorithms in config', () => {
    const base = { name: 'spire', preset: 'spiffe', issuer: 'https://spire.example' };
    expect(() => parseConfig({ issuers: [base] }, 'x')).toThrow(/must list its audiences/);
    expect(() => parseConfig({ issuers: [{ ...base, audiences: ['a'], algorithms: ['EdDSA'] }] }, 'x')).toThrow(/may allow only/);
    const ok = parseConfig({ issuers: [{ ...base, audiences: ['a'] }] }, 'x').issuers[0]!;
    expect(ok.algorithms).toEqual(['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512']);
  });

  it('authenticates the orchestrator principal by SPIFFE ID', async () => {
    const sp = await example('spiffe.yaml', 'ES256');
    const auth = createAuthenticator(sp.verifier, sp.config.principals);
    const principal = await auth.authenticate(await sp.sign({ sub: 'spiffe://example.org/ns/platform/sa/orchestrator' }));
    expect(principal).toMatchObject({ orchestrator: true, admin: false });
  });
});

describe('claim patterns accept only their whole-value language (property)', () => {
  const word = fc.stringMatching(/^[a-z0-9/._-]{1,12}$/);
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

  it('an alternation of literals matches exactly its members, as subject and as claim pattern', () => {
    fc.assert(
      fc.property(fc.uniqueArray(word, { minLength: 1, maxLength: 5 }), fc.oneof(word, fc.string({ maxLength: 20 })), (words, candidate) => {
        const pattern = words.map(escape).join('|');
        const expected = words.includes(candidate);
        expect(anchoredPattern(pattern).test(candidate)).toBe(expected);
        const rule = compileRule({ issuer: 'i', claim_patterns: { ref: pattern } } as never);
        const identity = { issuer: 'i', subject: 's', claims: { ref: candidate }, tokenSha256: '', expiresAt: new Date() };
        expect(rule(identity)).toBe(expected);
        // Every member with anything appended or prepended falls outside the language.
        for (const w of words) {
          if (!words.includes(`${w}-attacker`)) expect(anchoredPattern(pattern).test(`${w}-attacker`)).toBe(false);
          if (!words.includes(`x${w}`)) expect(anchoredPattern(pattern).test(`x${w}`)).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a non-string claim never matches a pattern, whatever its value', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.string()), fc.constant(null), fc.object()), (value) => {
        const rule = compileRule({ issuer: 'i', claim_patterns: { ref: '.*' } } as never);
        expect(rule({ issuer: 'i', subject: 's', claims: { ref: value } as never, tokenSha256: '', expiresAt: new Date() })).toBe(false);
      }),
    );
  });
});
