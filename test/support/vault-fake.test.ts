/**
 * The Vault fake, exercised only through the real node-vault client (the
 * one the broker uses), so it can stand in for Vault in the broker's tests.
 */
import vault from 'node-vault';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import { startVaultFake, type VaultFake, type VaultFakeOptions } from './vault-fake.js';

const BROKER_POLICY = {
  'database/creds/*': ['read'],
  'aws/creds/*': ['read'],
  'sys/leases/revoke': ['update'],
  'sys/leases/renew': ['update'],
  'sys/leases/lookup': ['update'],
  'auth/token/create/agent': ['update'],
  'auth/token/create/one-shot': ['update'],
  'auth/token/create': ['update'],
  'auth/token/lookup-accessor': ['update'],
  'auth/token/renew-accessor': ['update'],
  'auth/token/revoke-accessor': ['update'],
};

const BASE: VaultFakeOptions = {
  namespaces: ['team-a'],
  policies: {
    broker: BROKER_POLICY,
    reader: { 'database/creds/readonly': ['read'] },
    'agent-a': { 'secret/data/agent-a/*': ['read'] },
  },
  dynamicRoles: [
    { mount: 'database', role: 'readonly', kind: 'database', defaultTtl: 3600, maxTtl: 7200 },
    { mount: 'aws', role: 'deploy', kind: 'aws', defaultTtl: 900, maxTtl: 3600 },
    { mount: 'aws', role: 'session', kind: 'aws', defaultTtl: 900, maxTtl: 3600, credentialType: 'assumed_role' },
    { mount: 'db-team', role: 'readonly', kind: 'database', defaultTtl: 600, maxTtl: 1200, namespace: 'team-a' },
  ],
  tokenRoles: [
    { name: 'agent', allowedPolicies: ['agent-a'], maxTtl: 1800 },
    { name: 'one-shot', allowedPolicies: ['agent-a'] },
  ],
  approle: { roleId: 'role-id-1', secretId: 'secret-id-1', policies: ['broker'], ttl: 1200, roleName: 'tasklease' },
  jwtRoles: [
    { mount: 'jwt', role: 'broker', subject: 'spiffe://example.org/tasklease', policies: ['broker'], ttl: 600 },
    { mount: 'kubernetes', role: 'broker', subject: 'system:serviceaccount:tasklease:broker', policies: ['broker'], ttl: 900 },
  ],
};

let fake: VaultFake | undefined;
let clock: ManualClock;

async function setup(extra: Partial<VaultFakeOptions> = {}): Promise<VaultFake> {
  clock = createManualClock();
  fake = await startVaultFake({ ...BASE, clock, ...extra });
  return fake;
}

afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const client = (token?: string, namespace?: string) =>
  vault({ apiVersion: 'v1', endpoint: fake!.url, ...(token ? { token } : {}), ...(namespace ? { namespace } : {}) });

/** The broker's own token, as an operator would mint it. */
const brokerToken = (ttl = 3600) => fake!.createToken({ policies: ['broker'], ttl }).token;

/** How node-vault reports a refusal: an Error whose message is Vault's first error, with the status and body. */
async function failure(p: Promise<unknown>): Promise<{ status: number; message: string; body: { errors?: string[] } }> {
  try {
    await p;
  } catch (e) {
    const err = e as Error & { response?: { statusCode: number; body: { errors?: string[] } } };
    if (!err.response) throw err;
    return { status: err.response.statusCode, message: err.message, body: err.response.body };
  }
  throw new Error('expected Vault to refuse the request');
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const unsignedJwt = (claims: Record<string, unknown>) => `${b64url({ alg: 'RS256', typ: 'JWT' })}.${b64url(claims)}.c2lnbmF0dXJl`;

describe('vault fake: health and errors', () => {
  it('answers sys/health without a token', async () => {
    await setup();
    const h = await client().health();
    expect(h).toMatchObject({ initialized: true, sealed: false, standby: false });
  });

  it('refuses a missing token, an unknown token and a token lacking the capability with 403 and Vault\'s wording', async () => {
    await setup();
    const none = await failure(client().read('database/creds/readonly'));
    expect(none).toMatchObject({ status: 403, message: 'permission denied' });

    const bogus = await failure(client('hvs.not-a-token').read('database/creds/readonly'));
    expect(bogus.status).toBe(403);
    expect(bogus.message).toBe('2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n');

    const reader = fake!.createToken({ policies: ['reader'], ttl: 600 }).token;
    const lease = await client(reader).read('database/creds/readonly');
    const denied = await failure(client(reader).write('sys/leases/revoke', { lease_id: lease.lease_id, sync: true }));
    expect(denied.status).toBe(403);
    expect(denied.body).toEqual({ errors: ['1 error occurred:\n\t* permission denied\n\n'] });
    expect(fake!.leases.get(lease.lease_id)!.revoked).toBe(false);
  });

  it('injects failures: 503 "Vault is sealed" for the next request on a path, then normal service', async () => {
    await setup();
    const c = client(brokerToken());
    fake!.failNext('database/creds', 503);
    const sealed = await failure(c.read('database/creds/readonly'));
    expect(sealed).toMatchObject({ status: 503, message: 'Vault is sealed' });
    await expect(c.read('database/creds/readonly')).resolves.toHaveProperty('lease_id');

    fake!.failNext('sys/health', 503, 2);
    // node-vault hands back sys/health's body whatever the status.
    await expect(client().health()).resolves.toMatchObject({ sealed: true });
    await expect(client().health()).resolves.toMatchObject({ sealed: true });
    await expect(client().health()).resolves.toMatchObject({ sealed: false });
    expect(fake!.calls.filter((x) => x.path === 'sys/health').map((x) => x.status)).toEqual([503, 503, 200]);
  });

  it('answers unknown paths 404 and wrong methods 405', async () => {
    await setup();
    const root = client(fake!.rootToken);
    expect((await failure(root.read('nomount/creds/x'))).status).toBe(404);
    expect((await failure(root.read('sys/leases/revoke'))).status).toBe(405);
  });
});

describe('vault fake: dynamic secrets and leases', () => {
  it('issues a database credential under a lease and revokes it (sync), idempotently', async () => {
    await setup();
    const c = client(brokerToken());
    const res = await c.read('database/creds/readonly');
    expect(res).toMatchObject({ lease_duration: 3600, renewable: true, wrap_info: null, warnings: null, auth: null });
    expect(typeof res.request_id).toBe('string');
    expect(res.lease_id).toMatch(/^database\/creds\/readonly\/[A-Za-z0-9]{24}$/);
    expect(Object.keys(res.data).sort()).toEqual(['password', 'username']);
    const lease = fake!.leases.get(res.lease_id)!;
    expect(lease).toMatchObject({ path: 'database/creds/readonly', revoked: false, renewals: 0, namespace: '' });
    expect(lease.expiresAt.getTime() - lease.issuedAt.getTime()).toBe(3600_000);
    expect(lease.maxExpiresAt.getTime() - lease.issuedAt.getTime()).toBe(7200_000);

    await c.write('sys/leases/revoke', { lease_id: res.lease_id, sync: true });
    expect(fake!.leases.get(res.lease_id)!.revoked).toBe(true);
    expect(fake!.leaseLive(res.lease_id)).toBe(false);
    // Already revoked, or never issued: Vault answers 204 all the same.
    await c.write('sys/leases/revoke', { lease_id: res.lease_id, sync: true });
    await c.write('sys/leases/revoke', { lease_id: 'database/creds/readonly/nope', sync: true });
    // node-vault's own command (PUT) works too.
    const other = await c.read('database/creds/readonly');
    await c.revoke({ lease_id: other.lease_id });
    expect(fake!.leases.get(other.lease_id)!.revoked).toBe(true);

    const missing = await failure(c.write('sys/leases/revoke', { sync: true }));
    expect(missing).toMatchObject({ status: 400, message: 'lease_id must be specified' });
    expect(fake!.calls.filter((x) => x.path === 'sys/leases/revoke').map((x) => [x.method, x.status])).toEqual([
      ['POST', 204],
      ['POST', 204],
      ['POST', 204],
      ['PUT', 204],
      ['POST', 400],
    ]);
  });

  it('answers sync:false with 202, which node-vault reports as an error', async () => {
    await setup();
    const c = client(brokerToken());
    const res = await c.read('database/creds/readonly');
    const accepted = await failure(c.write('sys/leases/revoke', { lease_id: res.lease_id, sync: false }));
    expect(accepted.status).toBe(202);
    expect(fake!.leases.get(res.lease_id)!.revoked).toBe(true);
  });

  it('fails a synchronous revocation inside the engine as Vault does: 400 "failed to revoke entry", the lease kept', async () => {
    await setup();
    const c = client(brokerToken());
    const res = await c.read('database/creds/readonly');
    fake!.failRevocations('database', 2);
    const first = await failure(c.write('sys/leases/revoke', { lease_id: res.lease_id, sync: true }));
    expect(first.status).toBe(400);
    expect(first.body.errors).toHaveLength(1);
    expect(first.message).toMatch(/^failed to revoke entry: resp: \(\*logical\.Response\)\(nil\) err: failed to connect to .*connection refused\)$/);
    expect(fake!.leaseLive(res.lease_id)).toBe(true);
    // A lease Vault no longer holds never reaches the engine: success, as always.
    await c.write('sys/leases/revoke', { lease_id: 'database/creds/readonly/nope', sync: true });
    expect((await failure(c.write('sys/leases/revoke', { lease_id: res.lease_id, sync: true }))).status).toBe(400);
    await c.write('sys/leases/revoke', { lease_id: res.lease_id, sync: true });
    expect(fake!.leases.get(res.lease_id)!.revoked).toBe(true);
  });

  it('issues AWS credentials: IAM user keys (renewable, security_token null) or an STS session (not renewable)', async () => {
    await setup();
    const c = client(brokerToken());
    const iam = await c.read('aws/creds/deploy');
    expect(iam.lease_id).toMatch(/^aws\/creds\/deploy\//);
    expect(iam).toMatchObject({ lease_duration: 900, renewable: true });
    expect(iam.data.access_key).toMatch(/^AKIA[A-Z0-9]{16}$/);
    expect(iam.data.secret_key).toEqual(expect.any(String));
    expect(iam.data.security_token).toBeNull();

    const sts = await c.read('aws/creds/session');
    expect(sts.renewable).toBe(false);
    expect(sts.data.security_token).toEqual(expect.any(String));
    const renew = await failure(c.write('sys/leases/renew', { lease_id: sts.lease_id }));
    expect(renew).toMatchObject({ status: 400, message: 'lease is not renewable' });

    const unknown = await failure(c.read('aws/creds/nope'));
    expect(unknown).toMatchObject({ status: 400, message: 'Role "nope" not found' });
  });

  it('renews up to the max TTL and no further', async () => {
    await setup();
    const c = client(brokerToken(20_000));
    const res = await c.read('database/creds/readonly'); // ttl 3600, max 7200
    const lease = fake!.leases.get(res.lease_id)!;

    clock.advance(1800);
    const first = await c.write('sys/leases/renew', { lease_id: res.lease_id, increment: 3600 });
    expect(first).toMatchObject({ lease_id: res.lease_id, lease_duration: 3600, renewable: true, warnings: null });
    expect(lease.renewals).toBe(1);

    clock.advance(3000); // 4800s in: 2400s left before the max
    const capped = await c.renew({ lease_id: res.lease_id, increment: 3600 });
    expect(capped.lease_duration).toBe(2400);
    expect(capped.warnings).toEqual(['TTL of "1h0m0s" exceeded the effective max_ttl of "40m0s"; TTL value is capped accordingly']);
    expect(lease.expiresAt).toEqual(lease.maxExpiresAt);

    const looked = await c.write('sys/leases/lookup', { lease_id: res.lease_id });
    expect(looked.data).toMatchObject({ id: res.lease_id, renewable: true, ttl: 2400 });

    clock.advance(2400); // at the max: the lease is gone
    const over = await failure(c.write('sys/leases/renew', { lease_id: res.lease_id, increment: 60 }));
    expect(over).toMatchObject({ status: 400, message: 'lease not found' });
    expect(lease.renewals).toBe(2);
  });

  it('does not renew a revoked lease; renewing without an increment repeats the role TTL', async () => {
    await setup();
    const c = client(brokerToken(20_000));
    const a = await c.read('database/creds/readonly');
    clock.advance(100);
    expect((await c.write('sys/leases/renew', { lease_id: a.lease_id })).lease_duration).toBe(3600);
    await c.write('sys/leases/revoke', { lease_id: a.lease_id, sync: true });
    expect(await failure(c.write('sys/leases/renew', { lease_id: a.lease_id }))).toMatchObject({ status: 400, message: 'lease not found' });
  });

  it('revokes the leases a token read when the token is revoked, as Vault does', async () => {
    await setup();
    const child = await client(brokerToken()).write('auth/token/create', { policies: ['broker'], ttl: '10m' });
    const res = await client(child.auth.client_token).read('database/creds/readonly');
    await client(fake!.rootToken).write('auth/token/revoke-accessor', { accessor: child.auth.accessor });
    expect(fake!.leases.get(res.lease_id)!.revoked).toBe(true);
  });
});

describe('vault fake: tokens', () => {
  it('creates a token against a role with meta, looks it up by accessor, and revokes it by accessor', async () => {
    await setup();
    const broker = client(brokerToken());
    const res = await broker.write('auth/token/create/agent', {
      policies: ['agent-a'],
      meta: { tasklease_task: 't-1', tasklease_lease: 'l-1' },
      ttl: '15m',
      explicit_max_ttl: '1h',
      display_name: 'tasklease-l-1',
    });
    expect(res.auth).toMatchObject({
      policies: ['agent-a', 'default'],
      token_policies: ['agent-a', 'default'],
      metadata: { tasklease_task: 't-1', tasklease_lease: 'l-1' },
      lease_duration: 900,
      renewable: true,
      token_type: 'service',
      orphan: false,
    });
    expect(res.auth.client_token).toMatch(/^hvs\./);
    const record = fake!.tokens.get(res.auth.accessor)!;
    expect(record).toMatchObject({ policies: ['agent-a', 'default'], meta: { tasklease_task: 't-1' }, revoked: false, namespace: '', tokenRole: 'agent' });
    // The role's max TTL (30m) is lower than explicit_max_ttl (1h).
    expect(record.maxExpiresAt!.getTime() - record.issuedAt.getTime()).toBe(1800_000);
    expect(record.parentAccessor).toBe(fake!.calls.at(-1)!.tokenAccessor);

    const looked = await broker.write('auth/token/lookup-accessor', { accessor: res.auth.accessor });
    expect(looked.data).toMatchObject({ id: '', accessor: res.auth.accessor, display_name: 'token-tasklease-l-1', meta: { tasklease_task: 't-1', tasklease_lease: 'l-1' }, ttl: 900 });

    const agent = client(res.auth.client_token);
    expect((await agent.tokenLookupSelf()).data.policies).toEqual(['agent-a', 'default']);

    await broker.write('auth/token/revoke-accessor', { accessor: res.auth.accessor });
    expect(fake!.tokens.get(res.auth.accessor)!.revoked).toBe(true);
    const gone = await failure(agent.tokenLookupSelf());
    expect(gone.status).toBe(403);
    expect(gone.message).toContain('invalid token');
    // Revoking it again (Vault ≥ 1.10): success.
    await broker.write('auth/token/revoke-accessor', { accessor: res.auth.accessor });
    expect(await failure(broker.write('auth/token/lookup-accessor', { accessor: res.auth.accessor }))).toMatchObject({
      status: 400,
      message: '1 error occurred:\n\t* invalid accessor\n\n',
    });
  });

  it('answers revoke-accessor for a gone accessor with 400 "invalid accessor" when asked to act like Vault < 1.10', async () => {
    await setup({ legacyRevokeAccessor: true });
    const res = await failure(client(fake!.rootToken).write('auth/token/revoke-accessor', { accessor: 'nope' }));
    expect(res).toMatchObject({ status: 400, message: '1 error occurred:\n\t* invalid accessor\n\n' });
  });

  it('enforces token policy rules: child subset of parent, role allowed_policies, orphans need sudo', async () => {
    await setup();
    const broker = client(brokerToken());
    expect(await failure(broker.write('auth/token/create', { policies: ['agent-a'] }))).toMatchObject({ status: 400, message: 'child policies must be subset of parent' });
    expect(await failure(broker.write('auth/token/create/agent', { policies: ['broker'] }))).toMatchObject({
      status: 400,
      message: 'token policies (["broker"]) must be subset of the role\'s allowed policies (["agent-a"])',
    });
    expect(await failure(broker.write('auth/token/create', { no_parent: true }))).toMatchObject({ status: 400, message: 'root or sudo privileges required to create orphan token' });
    // Without a capability on the path, the ACL refuses before the role is looked up.
    expect((await failure(broker.write('auth/token/create/nope', {}))).status).toBe(403);
    expect(await failure(client(fake!.rootToken).write('auth/token/create/nope', {}))).toMatchObject({ status: 400, message: 'unknown role nope' });
  });

  it('spends num_uses: the last use works, then the token is revoked', async () => {
    await setup();
    const res = await client(brokerToken()).write('auth/token/create/one-shot', { num_uses: 2, ttl: '5m' });
    const agent = client(res.auth.client_token);
    expect((await agent.tokenLookupSelf()).data.num_uses).toBe(1);
    await agent.tokenLookupSelf();
    expect(fake!.tokens.get(res.auth.accessor)).toMatchObject({ revoked: true, numUses: -1 });
    expect((await failure(agent.tokenLookupSelf())).status).toBe(403);
  });

  it('enforces TTLs on the injectable clock: an expired token is refused, its children with it', async () => {
    await setup();
    const token = brokerToken(600);
    const child = await client(token).write('auth/token/create', { ttl: '1h' });
    clock.advance(599);
    await client(token).tokenLookupSelf();
    clock.advance(1);
    expect((await failure(client(token).tokenLookupSelf())).message).toContain('invalid token');
    expect((await failure(client(child.auth.client_token).tokenLookupSelf())).status).toBe(403);
    expect(fake!.tokenLive(child.auth.accessor)).toBe(false);
    expect(fake!.tokens.get(child.auth.accessor)!.revoked).toBe(false); // expired, not revoked
  });

  it('renews a token by accessor (documented endpoint; the answer carries no client_token)', async () => {
    await setup();
    const broker = client(brokerToken(20_000));
    const res = await broker.write('auth/token/create/agent', { ttl: '10m' });
    clock.advance(300);
    const renewed = await broker.write('auth/token/renew-accessor', { accessor: res.auth.accessor, increment: 3600 });
    // Capped by the role's 30m max TTL: 1800 - 300 = 1500s left.
    expect(renewed.auth).toMatchObject({ client_token: '', accessor: res.auth.accessor, lease_duration: 1500 });
    expect(renewed.warnings[0]).toContain('capped accordingly');
  });

  it('caps every renewal of a token at its explicit_max_ttl: renew-self by its holder and renew-accessor', async () => {
    await setup();
    const broker = client(brokerToken(20_000));
    const res = await broker.write('auth/token/create/agent', { ttl: '60s', explicit_max_ttl: '120s' });
    clock.advance(30);
    const self = await client(res.auth.client_token).write('auth/token/renew-self', { increment: '1h' });
    expect(self.auth.lease_duration).toBe(90);
    expect(self.warnings[0]).toContain('capped accordingly');
    clock.advance(60);
    const byAccessor = await broker.write('auth/token/renew-accessor', { accessor: res.auth.accessor, increment: 3600 });
    expect(byAccessor.auth.lease_duration).toBe(30);
    clock.advance(30);
    expect(fake!.tokenLive(res.auth.accessor)).toBe(false);
  });

  it("denies POST lookup-self to a token with only Vault's default policy (it grants read, not update)", async () => {
    await setup();
    const plain = client(fake!.createToken({ policies: [], ttl: 600 }).token);
    expect((await plain.tokenLookupSelf()).data.policies).toEqual(['default']);
    expect((await failure(plain.write('auth/token/lookup-self', {}))).status).toBe(403);
    await expect(plain.read('auth/token/lookup-self')).resolves.toHaveProperty('data.ttl', 600);
  });
});

describe('vault fake: the broker logging in', () => {
  it('logs in with AppRole, renews itself and sees the new TTL', async () => {
    await setup();
    const c = client();
    const login = await c.approleLogin({ role_id: 'role-id-1', secret_id: 'secret-id-1' });
    expect(login.auth).toMatchObject({ policies: ['broker', 'default'], metadata: { role_name: 'tasklease' }, lease_duration: 1200, renewable: true, orphan: true });
    expect(c.token).toBe(login.auth.client_token);
    expect(fake!.tokens.get(login.auth.accessor)!.path).toBe('auth/approle/login');

    clock.advance(600);
    const renewed = await c.tokenRenewSelf({ increment: '30m' });
    expect(renewed.auth).toMatchObject({ client_token: login.auth.client_token, lease_duration: 1800 });
    expect((await c.tokenLookupSelf()).data.ttl).toBe(1800);
    clock.advance(1800);
    expect((await failure(c.tokenLookupSelf())).status).toBe(403);

    // A stale token in X-Vault-Token does not stop a login (Vault ignores token errors on unauthenticated paths).
    await expect(client(login.auth.client_token).approleLogin({ role_id: 'role-id-1', secret_id: 'secret-id-1' })).resolves.toHaveProperty('auth.client_token');

    const wrong = await failure(client().approleLogin({ role_id: 'role-id-1', secret_id: 'nope' }));
    expect(wrong).toMatchObject({ status: 400, message: 'invalid role or secret ID' });
  });

  it('logs in with a JWT or a Kubernetes service-account token whose sub is configured (no signature check)', async () => {
    await setup();
    const jwt = await client().jwtLogin({ role: 'broker', jwt: unsignedJwt({ sub: 'spiffe://example.org/tasklease' }) });
    expect(jwt.auth).toMatchObject({ policies: ['broker', 'default'], lease_duration: 600, metadata: { role: 'broker' } });
    // node-vault 0.12.0's kubernetesLogin renders its default mount from the call's arguments only, so it needs mount_point.
    const k8s = await client().kubernetesLogin({ mount_point: 'kubernetes', role: 'broker', jwt: unsignedJwt({ sub: 'system:serviceaccount:tasklease:broker' }) });
    expect(k8s.auth.metadata).toMatchObject({ role: 'broker', service_account_name: 'broker', service_account_namespace: 'tasklease' });
    await expect(client(k8s.auth.client_token).read('database/creds/readonly')).resolves.toHaveProperty('lease_id');

    expect((await failure(client().jwtLogin({ role: 'broker', jwt: unsignedJwt({ sub: 'someone-else' }) }))).status).toBe(400);
    expect((await failure(client().kubernetesLogin({ mount_point: 'kubernetes', role: 'broker', jwt: unsignedJwt({ sub: 'system:serviceaccount:x:y' }) }))).status).toBe(403);
    expect((await failure(client().jwtLogin({ role: 'nope', jwt: unsignedJwt({}) }))).message).toBe('role "nope" could not be found');
  });
});

describe('vault fake: capabilities and namespaces', () => {
  it('reports the calling token\'s capabilities per path (top level and under data)', async () => {
    await setup();
    const res = await client(brokerToken()).write('sys/capabilities-self', {
      paths: ['sys/leases/revoke', 'database/creds/readonly', 'auth/token/lookup-self', 'sys/mounts'],
    });
    expect(res['sys/leases/revoke']).toEqual(['update']);
    expect(res['database/creds/readonly']).toEqual(['read']);
    expect(res['auth/token/lookup-self']).toEqual(['read']); // from the default policy
    expect(res['sys/mounts']).toEqual(['deny']);
    expect(res.data['sys/leases/revoke']).toEqual(['update']);
    const one = await client(fake!.rootToken).write('sys/capabilities-self', { paths: ['anything/at/all'] });
    expect(one.capabilities).toEqual(['root']);
  });

  it('keeps namespaces apart: X-Vault-Namespace selects the namespace, ids carry its suffix', async () => {
    await setup();
    const inNs = client(fake!.rootToken, 'team-a');
    const res = await inNs.read('db-team/creds/readonly');
    expect(res.lease_id).toMatch(/^db-team\/creds\/readonly\/[A-Za-z0-9]{24}\.[A-Za-z0-9]{5}$/);
    expect(fake!.leases.get(res.lease_id)).toMatchObject({ namespace: 'team-a', path: 'db-team/creds/readonly' });
    expect(fake!.calls.at(-1)).toMatchObject({ method: 'GET', path: 'db-team/creds/readonly', namespace: 'team-a', status: 200 });

    // The mount does not exist in the root namespace.
    expect((await failure(client(fake!.rootToken).read('db-team/creds/readonly'))).status).toBe(404);
    // A token made in team-a works there and not in root.
    const nsToken = fake!.createToken({ policies: ['reader'], ttl: 600, namespace: 'team-a' });
    expect(nsToken.accessor).toMatch(/\.[A-Za-z0-9]{5}$/);
    await expect(client(nsToken.token, 'team-a').tokenLookupSelf()).resolves.toHaveProperty('data.accessor', nsToken.accessor);
    expect((await failure(client(nsToken.token).read('database/creds/readonly'))).status).toBe(403);
    // A namespace that does not exist.
    expect((await failure(client(fake!.rootToken, 'nope').read('database/creds/readonly'))).status).toBe(404);
    // Renewing team-a's lease from the root namespace is refused; revoking it from team-a works.
    expect(await failure(client(fake!.rootToken).write('sys/leases/renew', { lease_id: res.lease_id }))).toMatchObject({
      status: 400,
      message: 'cannot renew a lease across namespaces',
    });
    await inNs.write('sys/leases/revoke', { lease_id: res.lease_id, sync: true });
    expect(fake!.leases.get(res.lease_id)!.revoked).toBe(true);
  });
});
