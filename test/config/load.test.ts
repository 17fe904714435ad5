import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/config/duration.js';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'tasklease-config-'));
let fileCount = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes YAML to a fresh temp file and returns its path. */
function yamlFile(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The message of the ConfigError `fn` throws (fails the test if it throws anything else or nothing). */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const issuer = { name: 'k8s', issuer: 'https://k8s.example.com' };
const rule = { issuer: 'k8s', subject: 'system:serviceaccount:agents:a' };
const role = (extra: Record<string, unknown> = {}) => ({ name: 'reader', backend: 'local', allow: [rule], ...extra });
const base = (extra: Record<string, unknown> = {}) => ({
  issuers: [issuer],
  backends: { local: { type: 'jwt' } },
  roles: [role()],
  ...extra,
});

const VALID_YAML = `
public_url: https://tasklease.example.com
issuers:
  - name: k8s
    issuer: https://k8s.example.com
    algorithms: [ES256]
principals:
  admins:
    - { name: ops, token_sha256: "${'ab'.repeat(32)}" }
  orchestrators:
    - { issuer: k8s, subject: "system:serviceaccount:ci:orchestrator" }
backends:
  local:
    type: jwt
roles:
  - name: reports-read
    backend: local
    ttl: 15m
    max_ttl: 1h30m
    allow:
      - { issuer: k8s, subject_pattern: "system:serviceaccount:agents:.*" }
`;

describe('parseDuration', () => {
  it.each([
    [900, 900],
    ['900', 900],
    ['15m', 900],
    ['1h', 3600],
    ['1h30m', 5400],
    ['1d', 86400],
    ['2m30s', 150],
    [' 10s ', 10],
    [0, 0],
  ] as const)('parses %j as %d seconds', (input, seconds) => {
    expect(parseDuration(input)).toBe(seconds);
  });

  it.each(['15x', 'm', '1.5h', '', '   ', '1h 30m', '-5', 'h1', '15mm', '1e3'] as const)('rejects the string %j', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });

  it.each([-5, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects the number %d', (input) => {
    expect(parseDuration(input)).toBeUndefined();
  });
});

describe('loadConfigFile', () => {
  it('loads a valid YAML file and applies defaults', () => {
    const config = loadConfigFile(yamlFile(VALID_YAML), {});
    expect(config.public_url).toBe('https://tasklease.example.com');
    expect(config.port).toBe(8080);
    expect(config.host).toBe('127.0.0.1');
    expect(config.issuers[0]).toMatchObject({ name: 'k8s', algorithms: ['ES256'], clock_tolerance: 30 });
    expect(config.roles[0]).toMatchObject({ name: 'reports-read', ttl: 900, max_ttl: 5400 });
    expect(config.backends.local).toEqual({ type: 'jwt', key_rotation: 7 * 86400 });
    expect(config.principals.admins).toHaveLength(1);
    expect(config.sweeper.batch_size).toBe(500);
  });

  it('treats an empty file as an all-defaults config', () => {
    const config = loadConfigFile(yamlFile(''), {});
    expect(config.roles).toEqual([]);
    expect(config.issuers).toEqual([]);
    expect(config.public_url).toBe('http://localhost:8080');
  });

  it('names the file and the bad key path', () => {
    const file = yamlFile(VALID_YAML.replace('backend: local', 'backend: nope'));
    const message = configError(() => loadConfigFile(file, {}));
    expect(message).toContain(file);
    expect(message).toContain("roles[0].backend: unknown backend 'nope'");
  });

  it('names the file and path of a bad duration', () => {
    const file = yamlFile(VALID_YAML.replace('ttl: 15m', 'ttl: 15 minutes'));
    const message = configError(() => loadConfigFile(file, {}));
    expect(message).toContain(`${file}: roles[0].ttl: not a duration`);
  });

  it('names a missing file', () => {
    const file = join(dir, 'does-not-exist.yaml');
    expect(configError(() => loadConfigFile(file, {}))).toBe(`${file}: cannot read: ENOENT`);
  });

  it('rejects invalid YAML and a non-mapping top level, naming the file', () => {
    const broken = yamlFile('roles: [unclosed\n');
    expect(configError(() => loadConfigFile(broken, {}))).toContain(`${broken}: invalid YAML`);
    const list = yamlFile('- a\n- b\n');
    expect(configError(() => loadConfigFile(list, {}))).toBe(`${list}: the top level must be a mapping`);
    const scalar = yamlFile('hello\n');
    expect(configError(() => loadConfigFile(scalar, {}))).toBe(`${scalar}: the top level must be a mapping`);
  });

  it('expands ${VAR} from the given environment', () => {
    const file = yamlFile(VALID_YAML.replace('https://k8s.example.com', '${K8S_ISSUER}').replace('ttl: 15m', 'ttl: ${TTL}'));
    const config = loadConfigFile(file, { K8S_ISSUER: 'https://oidc.example.net/id/X', TTL: '10m' });
    expect(config.issuers[0]!.issuer).toBe('https://oidc.example.net/id/X');
    expect(config.roles[0]!.ttl).toBe(600);
  });

  it('names a missing environment variable and where it is used', () => {
    const file = yamlFile(VALID_YAML.replace('https://k8s.example.com', '${K8S_ISSUER}'));
    const message = configError(() => loadConfigFile(file, {}));
    expect(message).toContain('K8S_ISSUER');
    expect(message).toContain('issuers[0].issuer');
    expect(message.startsWith(`${file}: `)).toBe(true);
  });
});

describe('parseConfig', () => {
  it('accepts a minimal valid config', () => {
    const config = parseConfig(base(), 'inline');
    expect(config.roles[0]).toMatchObject({ name: 'reader', ttl: 900, max_ttl: 3600 });
  });

  it('rejects unknown top-level keys', () => {
    expect(configError(() => parseConfig(base({ bogus: 1 }), 'inline'))).toMatch(/^inline: \(root\): .*bogus/);
  });

  it('rejects unknown keys in nested strict objects', () => {
    const message = configError(() => parseConfig(base({ roles: [role({ ttl_seconds: 5 })] }), 'inline'));
    expect(message).toMatch(/^inline: roles\[0\]: .*ttl_seconds/);
  });

  it.each([
    ['15m', 900],
    ['1h30m', 5400],
    [900, 900],
  ] as const)('reads the duration %j as %d seconds', (ttl, seconds) => {
    const config = parseConfig(base({ roles: [role({ ttl, max_ttl: '2h' })] }), 'inline');
    expect(config.roles[0]!.ttl).toBe(seconds);
  });

  it.each(['15x', '1.5h', -1, 1.5, 'soon'])('rejects the duration %j with its path', (ttl) => {
    expect(configError(() => parseConfig(base({ roles: [role({ ttl })] }), 'inline'))).toContain(
      'inline: roles[0].ttl: not a duration',
    );
  });

  it('rejects ttl greater than max_ttl, and a zero ttl', () => {
    const over = configError(() => parseConfig(base({ roles: [role({ ttl: '2h', max_ttl: '1h' })] }), 'inline'));
    expect(over).toBe('inline: roles[0]: ttl must be between 1s and max_ttl');
    expect(configError(() => parseConfig(base({ roles: [role({ ttl: 0 })] }), 'inline'))).toContain('roles[0]');
  });

  it('accepts ttl equal to max_ttl', () => {
    const config = parseConfig(base({ roles: [role({ ttl: '1h', max_ttl: 3600 })] }), 'inline');
    expect(config.roles[0]).toMatchObject({ ttl: 3600, max_ttl: 3600 });
  });

  it("reads a jwt role's relying_parties_introspect as a boolean, false unless set", () => {
    const config = parseConfig(base({ roles: [role({ name: 'a', jwt: { relying_parties_introspect: true } }), role({ name: 'b', jwt: { audience: 'x' } })] }), 'inline');
    expect(config.roles.map((r) => r.jwt?.relying_parties_introspect)).toEqual([true, false]);
    const message = configError(() => parseConfig(base({ roles: [role({ jwt: { relying_parties_introspect: 'yes' } })] }), 'inline'));
    expect(message).toMatch(/^inline: roles\[0\]\.jwt\.relying_parties_introspect: /);
  });

  it('applies DATABASE_URL, PORT, HOST and PUBLIC_URL over the file', () => {
    const env = {
      DATABASE_URL: 'postgres://u@db/tasklease',
      PORT: '9090',
      HOST: '0.0.0.0',
      PUBLIC_URL: 'https://broker.example.org',
    };
    const input = base({ database_url: 'postgres://file', port: 1234, host: '10.0.0.1', public_url: 'https://file.example' });
    const config = parseConfig(input, 'inline', env);
    expect(config).toMatchObject({
      database_url: env.DATABASE_URL,
      port: 9090,
      host: '0.0.0.0',
      public_url: 'https://broker.example.org',
    });
  });

  it('ignores unset or empty override variables', () => {
    const config = parseConfig(base({ port: 1234 }), 'inline', { PORT: '', HOST: undefined });
    expect(config.port).toBe(1234);
    expect(config.host).toBe('127.0.0.1');
    expect(config.database_url).toBeUndefined();
  });

  it('rejects a non-numeric PORT naming the port key', () => {
    expect(configError(() => parseConfig(base(), 'inline', { PORT: 'eighty' }))).toMatch(/^inline: port: /);
  });

  it('does not expand variables recursively', () => {
    const config = parseConfig(base({ data_dir: '${DIR}' }), 'inline', { DIR: '${SECRET}', SECRET: 'leaked' });
    expect(config.data_dir).toBe('${SECRET}');
  });

  it('rejects duplicate role names', () => {
    const input = base({ roles: [role(), role({ ttl: 60 })] });
    expect(configError(() => parseConfig(input, 'inline'))).toBe("inline: roles[1].name: duplicate role 'reader'");
  });

  it('rejects duplicate issuer names', () => {
    const input = base({ issuers: [issuer, { name: 'k8s', issuer: 'https://other.example.com' }] });
    expect(configError(() => parseConfig(input, 'inline'))).toBe("inline: issuers[1].name: duplicate issuer 'k8s'");
  });

  it('rejects two issuers with one URL (one would silently shadow the other)', () => {
    const input = base({ issuers: [issuer, { ...issuer, name: 'k8s-b' }] });
    expect(configError(() => parseConfig(input, 'inline'))).toContain('issuers[1].issuer: another issuer already has the URL');
  });

  it('rejects a rule with both subject and subject_pattern', () => {
    const input = base({ roles: [role({ allow: [{ ...rule, subject_pattern: 'system:.*' }] })] });
    const message = configError(() => parseConfig(input, 'inline'));
    expect(message).toBe('inline: roles[0].allow[0]: set at most one of subject and subject_pattern');
  });

  it('rejects a rule that names no subject, pattern or claims', () => {
    const input = base({ roles: [role({ allow: [{ issuer: 'k8s' }] })] });
    expect(configError(() => parseConfig(input, 'inline'))).toContain('roles[0].allow[0]: set subject, subject_pattern, claims or claim_patterns');
  });

  it.each(['a(', '[z-a]', '*x', '\\'])('rejects the invalid regular expression %j', (pattern) => {
    const input = base({ roles: [role({ allow: [{ issuer: 'k8s', subject_pattern: pattern }] })] });
    expect(configError(() => parseConfig(input, 'inline'))).toBe(
      'inline: roles[0].allow[0].subject_pattern: subject_pattern is not a valid regular expression',
    );
  });

  it('rejects an unknown issuer in a role rule and in a principal', () => {
    const input = base({
      roles: [role({ allow: [rule, { issuer: 'gitlab', subject: 'x' }] })],
      principals: { admins: [{ issuer: 'github', subject: 'y' }] },
    });
    const message = configError(() => parseConfig(input, 'inline'));
    expect(message).toContain("inline: roles[0].allow[1].issuer: unknown issuer 'gitlab'");
    expect(message).toContain("inline: principals.admins[0].issuer: unknown issuer 'github'");
  });

  it('reports every cross-reference problem at once, one per line', () => {
    const input = base({ roles: [role({ backend: 'aws' }), role()] });
    expect(configError(() => parseConfig(input, 'inline')).split('\n')).toEqual([
      "inline: roles[0].backend: unknown backend 'aws'",
      "inline: roles[1].name: duplicate role 'reader'",
    ]);
  });

  it('rejects invalid names, issuer URLs and static token hashes with their paths', () => {
    expect(configError(() => parseConfig(base({ roles: [role({ name: 'Reader' })] }), 'inline'))).toContain('roles[0].name');
    expect(configError(() => parseConfig(base({ issuers: [{ name: 'k8s', issuer: 'not a url' }] }), 'inline'))).toContain(
      'issuers[0].issuer',
    );
    const badHash = { principals: { admins: [{ name: 'ops', token_sha256: 'ABC' }] } };
    expect(configError(() => parseConfig(base(badHash), 'inline'))).toContain('principals.admins[0]');
  });

  it('names the missing or stray key of a principal instead of a bare "Invalid input"', () => {
    const hash = 'ab'.repeat(32);
    const at = (principal: Record<string, unknown>) => configError(() => parseConfig(base({ principals: { admins: [principal] } }), 'inline'));
    expect(at({ token_sha256: hash })).toBe('inline: principals.admins[0].name: Invalid input: expected string, received undefined');
    expect(at({ name: 'ops', token_sha256: hash, issuer: 'k8s' })).toBe('inline: principals.admins[0]: Unrecognized key: "issuer"');
    expect(at({ name: 'ops' })).toBe('inline: principals.admins[0].issuer: Invalid input: expected string, received undefined');
    expect(at({ name: 'ops', token_sha256: 'ABC' })).toBe('inline: principals.admins[0].token_sha256: 64 lowercase hex digits');
    expect(configError(() => parseConfig(base({ principals: { orchestrators: ['ops'] } }), 'inline'))).toBe(
      'inline: principals.orchestrators[0]: Invalid input: expected object, received string',
    );
  });

  it('reads the metrics listener from config or METRICS_LISTEN, on localhost by default', () => {
    expect(parseConfig(base(), 'inline').metrics).toEqual({ listen: { host: '127.0.0.1', port: 9464 } });
    expect(parseConfig(base({ metrics: { listen: 'off' } }), 'inline').metrics.listen).toBeNull();
    expect(parseConfig(base({ metrics: { listen: '[::1]:9100' } }), 'inline').metrics.listen).toEqual({ host: '::1', port: 9100 });
    const token = { listen: 'off', token_sha256: 'ab'.repeat(32) };
    expect(parseConfig(base({ metrics: token }), 'inline', { METRICS_LISTEN: '0.0.0.0:9464' }).metrics).toEqual({ listen: { host: '0.0.0.0', port: 9464 }, token_sha256: token.token_sha256 });
    for (const listen of ['9464', 'localhost', '127.0.0.1:99999', 'http://127.0.0.1:9464', '::1:9464']) {
      expect(configError(() => parseConfig(base({ metrics: { listen } }), 'inline')), listen).toMatch(/^inline: metrics\.listen: host:port/);
    }
    expect(configError(() => parseConfig(base({ metrics: { token_sha256: 'secret' } }), 'inline'))).toBe('inline: metrics.token_sha256: 64 lowercase hex digits');
  });

  it('rejects an issuer with both jwks_uri and jwks', () => {
    const both = { ...issuer, jwks_uri: 'https://k8s.example.com/keys', jwks: { keys: [{ kty: 'EC' }] } };
    expect(configError(() => parseConfig(base({ issuers: [both] }), 'inline'))).toContain(
      'issuers[0]: set at most one of jwks_uri and jwks',
    );
  });
});

describe('agents in the config', () => {
  const agent = (name: string, match: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    name,
    match: { issuer: 'k8s', ...match },
    owner: { name: 'team', contact: 'team@example.com' },
    purpose: 'tests',
    roles: ['reader'],
    ...extra,
  });
  const withAgents = (register: unknown[]) => base({ agents: { require_registration: true, register } });

  it('loads registered agents, registration off unless asked', () => {
    const config = parseConfig(withAgents([agent('a', { subject: 'a' }), agent('fleet', { subject_pattern: 'fleet-.*' })]), 'test');
    expect(config.agents.require_registration).toBe(true);
    expect(config.agents.register.map((a) => a.name)).toEqual(['a', 'fleet']);
    expect(parseConfig(base(), 'test').agents).toEqual({ require_registration: false, register: [] });
  });

  it('refuses two agents one identity could match, naming both', () => {
    const message = configError(() => parseConfig(withAgents([agent('fleet', { subject_pattern: 'agent-.*' }), agent('one', { subject: 'agent-1' })]), 'test'));
    expect(message).toContain("agents.register[1].match: an identity could match both 'fleet' and 'one'");
  });

  it('refuses unknown roles and issuers, duplicate names and a missing owner', () => {
    expect(configError(() => parseConfig(withAgents([agent('a', { subject: 'a' }, { roles: ['nope'] })]), 'test'))).toContain("agents.register[0].roles[0]: unknown role 'nope'");
    expect(configError(() => parseConfig(withAgents([agent('a', { subject: 'a', issuer: 'elsewhere' })]), 'test'))).toContain("agents.register[0].match.issuer: unknown issuer 'elsewhere'");
    expect(configError(() => parseConfig(withAgents([agent('a', { subject: 'a' }), agent('a', { subject: 'b' })]), 'test'))).toContain("duplicate agent 'a'");
    expect(configError(() => parseConfig(withAgents([{ ...agent('a', { subject: 'a' }), owner: undefined }]), 'test'))).toContain('agents.register[0].owner');
  });
});

describe('dev mode is not a config file setting', () => {
  it('refuses dev: in a file (it would enable the dev issuer and register agents on sight)', () => {
    expect(configError(() => loadConfigFile(yamlFile('dev: true\n'), {}))).toContain('dev: is set by dev mode only');
  });
});

describe('console.oidc', () => {
  const corp = { name: 'corp', issuer: 'https://login.example.com' };
  const oidc = (extra: Record<string, unknown> = {}) => ({ issuer: 'https://login.example.com', client_id: 'tasklease', issuer_name: 'corp', ...extra });

  it('accepts a provider that is a configured issuer, with openid as the default scope and the secret from ${ENV}', () => {
    const file = yamlFile(
      'issuers:\n  - { name: corp, issuer: "https://login.example.com" }\nconsole:\n  oidc:\n    issuer: https://login.example.com\n    client_id: tasklease\n    client_secret: ${CONSOLE_SECRET}\n    issuer_name: corp\n',
    );
    const config = loadConfigFile(file, { CONSOLE_SECRET: 's3cret' });
    expect(config.console.oidc).toEqual({ issuer: 'https://login.example.com', client_id: 'tasklease', client_secret: 's3cret', scopes: ['openid'], issuer_name: 'corp', logout: 'provider' });
  });

  it('takes logout: provider (the default: RP-initiated logout where the provider offers it) or local, and nothing else', () => {
    const input = (o: Record<string, unknown>) => base({ issuers: [issuer, corp], console: { oidc: o } });
    expect(parseConfig(input(oidc()), 'inline').console.oidc?.logout).toBe('provider');
    expect(parseConfig(input(oidc({ logout: 'local' })), 'inline').console.oidc?.logout).toBe('local');
    expect(configError(() => parseConfig(input(oidc({ logout: 'everywhere' })), 'inline'))).toContain('console.oidc.logout');
  });

  it('refuses an issuer_name that names no issuer, and a URL that is not that issuer\'s', () => {
    expect(configError(() => parseConfig(base({ console: { oidc: oidc({ issuer_name: 'nope' }) } }), 'inline'))).toBe("inline: console.oidc.issuer_name: unknown issuer 'nope'");
    const other = configError(() => parseConfig(base({ issuers: [issuer, corp], console: { oidc: oidc({ issuer: 'https://elsewhere.example.com' }) } }), 'inline'));
    expect(other).toBe("inline: console.oidc.issuer: must equal the URL of issuer 'corp' (https://login.example.com)");
  });

  it('refuses scopes without openid, a bad scope, a missing client_id and unknown keys', () => {
    const input = (o: Record<string, unknown>) => base({ issuers: [issuer, corp], console: { oidc: o } });
    expect(configError(() => parseConfig(input(oidc({ scopes: ['email'] })), 'inline'))).toContain('console.oidc.scopes: scopes must include openid');
    expect(configError(() => parseConfig(input(oidc({ scopes: ['openid', 'a b'] })), 'inline'))).toContain('console.oidc.scopes[1]');
    expect(configError(() => parseConfig(input(oidc({ client_id: undefined })), 'inline'))).toContain('console.oidc.client_id');
    expect(configError(() => parseConfig(input(oidc({ redirect_uri: 'x' })), 'inline'))).toContain('console.oidc');
    expect(parseConfig(input(oidc({ scopes: ['openid', 'email', 'groups'] })), 'inline').console.oidc?.scopes).toEqual(['openid', 'email', 'groups']);
  });
});
