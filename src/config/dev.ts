import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import type { ConfigInput } from './schema.js';
import { sha256Hex } from '../ids.js';

/** The dev issuer's URL: `.invalid` never resolves, and its keys are inline, so nothing is ever fetched. */
export const DEV_ISSUER = 'https://dev-issuer.tasklease.invalid';
export const DEV_AUDIENCE = 'tasklease-dev';

const keyFile = (dataDir: string) => join(dataDir, 'dev-issuer.jwk.json');

/** Loads (or creates, mode 0600) the dev issuer's ES256 key under the data dir. */
export async function devIssuerKey(dataDir: string): Promise<JWK> {
  const file = keyFile(dataDir);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: `dev-${Date.now().toString(36)}` };
    try {
      writeFileSync(file, JSON.stringify(jwk), { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return JSON.parse(readFileSync(file, 'utf8')) as JWK;
}

/** A dev identity token for `subject`, signed by the dev issuer. Dev mode only. */
export async function signDevToken(dataDir: string, subject: string, ttlSeconds = 3600): Promise<string> {
  const jwk = await devIssuerKey(dataDir);
  const key = await importJWK(jwk, 'ES256');
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid!, typ: 'JWT' })
    .setIssuer(DEV_ISSUER)
    .setAudience(DEV_AUDIENCE)
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(key);
}

/**
 * The configuration `npm start` runs with when no config file is given: the
 * dev issuer, the jwt backend and example roles. Subjects `orchestrator` and
 * `admin` hold those principals; any `agent-*` subject may request the roles.
 */
/** The Cedar policy dev mode ships (docs/policy.md), written once into the data directory: edit it there. */
export const DEV_POLICY = `// Dev mode's example policy (docs/policy.md): no write role on a production task.
@id("dev:no-writes-in-production")
forbid (principal, action == Tasklease::Action::"RequestCredential", resource)
when {
  resource.hasTag("access") && resource.getTag("access") == "write" &&
  context.task.hasTag("environment") && context.task.getTag("environment") == "production"
};
`;

/** DEV_POLICY as earlier versions wrote it: it no longer validates once the schema had more than one action. */
const PAST_DEV_POLICIES = [DEV_POLICY.replace('action == Tasklease::Action::"RequestCredential"', 'action')];

/** Dev mode's resource server's secret: dev mode only, and printed in the README. */
export const DEV_RESOURCE_SERVER_SECRET = 'demo-api-dev-secret';

export async function devConfig(dataDir: string): Promise<ConfigInput> {
  const { d: _private, ...publicJwk } = await devIssuerKey(dataDir);
  const policyFile = join(dataDir, 'dev-policy.cedar');
  // Written when missing, or still as an earlier version shipped it (edited ones are the developer's).
  if (!existsSync(policyFile) || PAST_DEV_POLICIES.includes(readFileSync(policyFile, 'utf8'))) writeFileSync(policyFile, DEV_POLICY, { mode: 0o600 });
  const agents = [{ issuer: 'dev', subject_pattern: 'agent-.*' }];
  return {
    dev: true,
    data_dir: dataDir,
    issuers: [
      { name: 'dev', issuer: DEV_ISSUER, jwks: { keys: [publicJwk] }, audiences: [DEV_AUDIENCE], algorithms: ['ES256'] },
    ],
    principals: {
      orchestrators: [{ name: 'orchestrator', issuer: 'dev', subject: 'orchestrator' }],
      admins: [{ name: 'admin', issuer: 'dev', subject: 'admin' }],
    },
    backends: { local: { type: 'jwt' } },
    // Each agent-* subject is registered as an agent of that name, owned by `dev`, when first seen (broker.ts).
    agents: { require_registration: true },
    policy: { cedar: { files: [policyFile] } },
    // A resource server for the demo roles' tokens: it introspects at /oauth2/introspect and polls /ssf/poll
    // for the security events of tokens that ended (docs/oauth.md), as `demo-api` with DEV_RESOURCE_SERVER_SECRET.
    oauth: { resource_servers: [{ client_id: 'demo-api', secret_sha256: sha256Hex(DEV_RESOURCE_SERVER_SECRET), audiences: ['demo-api'], security_events: { delivery: 'poll' } }] },
    roles: [
      { name: 'demo', backend: 'local', ttl: '15m', max_ttl: '1h', allow: agents, labels: { access: 'write' }, jwt: { audience: 'demo-api', scope: 'demo:read demo:write' } },
      { name: 'demo-readonly', backend: 'local', ttl: '5m', max_ttl: '15m', allow: agents, labels: { access: 'read' }, jwt: { audience: 'demo-api', scope: 'demo:read' } },
      // Gated: the agent gets 202 with an approval id; `admin` approves; the agent repeats with `approval`.
      { name: 'demo-approval', backend: 'local', ttl: '5m', max_ttl: '15m', allow: agents, requires_approval: true, jwt: { audience: 'demo-api', scope: 'demo:admin' } },
    ],
  };
}
