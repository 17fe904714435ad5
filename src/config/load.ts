import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { agentRuleProblems } from '../agents/overlap.js';
import { ConfigSchema, type Config, type ConfigInput } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/** Replaces `${VAR}` in every string of the parsed document; a missing variable is an error naming it. */
function expandEnv(value: unknown, env: Env, path: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name];
      if (found === undefined) throw new ConfigError(`${path}: environment variable ${name} is not set`);
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, path ? `${path}.${k}` : k)]));
  }
  return value;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, key) => (typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)),
    '',
  );
}

function formatIssues(source: string, error: z.ZodError): string {
  return error.issues.map((issue) => `${source}: ${formatPath(issue.path) || '(root)'}: ${issue.message}`).join('\n');
}

/** Cross-references zod cannot see: names that must exist and be unique. */
function crossCheck(config: Config): string[] {
  const problems: string[] = [];
  const issuers = new Set<string>();
  const urls = new Set<string>();
  config.issuers.forEach((issuer, i) => {
    if (issuers.has(issuer.name)) problems.push(`issuers[${i}].name: duplicate issuer '${issuer.name}'`);
    // A token's iss picks exactly one issuer, so two entries for one URL would silently shadow each other.
    if (urls.has(issuer.issuer)) problems.push(`issuers[${i}].issuer: another issuer already has the URL '${issuer.issuer}'`);
    issuers.add(issuer.name);
    urls.add(issuer.issuer);
  });
  const checkRule = (rule: object, at: string) => {
    if ('issuer' in rule && typeof rule.issuer === 'string' && !issuers.has(rule.issuer)) {
      problems.push(`${at}.issuer: unknown issuer '${rule.issuer}'`);
    }
  };
  for (const kind of ['orchestrators', 'admins'] as const) {
    config.principals[kind].forEach((p, i) => checkRule(p, `principals.${kind}[${i}]`));
  }
  const roles = new Set<string>();
  config.roles.forEach((role, i) => {
    if (roles.has(role.name)) problems.push(`roles[${i}].name: duplicate role '${role.name}'`);
    roles.add(role.name);
    const backend = config.backends[role.backend];
    if (!backend) problems.push(`roles[${i}].backend: unknown backend '${role.backend}'`);
    if (backend?.type === 'aws-sts' && !role.aws) problems.push(`roles[${i}].aws: required for the aws-sts backend '${role.backend}'`);
    if (backend?.type === 'vault' && !role.vault) problems.push(`roles[${i}].vault: required for the vault backend '${role.backend}'`);
    role.allow.forEach((rule, j) => checkRule(rule, `roles[${i}].allow[${j}]`));
    role.approvers.forEach((rule, j) => checkRule(rule, `roles[${i}].approvers[${j}]`));
  });
  config.policy.conflicts.forEach((conflict, i) =>
    conflict.roles.forEach((role, j) => {
      if (!roles.has(role)) problems.push(`policy.conflicts[${i}].roles[${j}]: unknown role '${role}'`);
    }),
  );
  config.policy.approvals.rules.forEach((rule, i) =>
    rule.roles?.forEach((role, j) => {
      if (!roles.has(role)) problems.push(`policy.approvals.rules[${i}].roles[${j}]: unknown role '${role}'`);
    }),
  );
  const oidc = config.console.oidc;
  if (oidc) {
    // The console's people and the API's callers share one identity model: the provider must be a configured issuer.
    const named = config.issuers.find((i) => i.name === oidc.issuer_name);
    if (!named) problems.push(`console.oidc.issuer_name: unknown issuer '${oidc.issuer_name}'`);
    else if (named.issuer !== oidc.issuer) problems.push(`console.oidc.issuer: must equal the URL of issuer '${oidc.issuer_name}' (${named.issuer})`);
  }
  problems.push(...checkAgents(config, roles, checkRule));
  return problems;
}

/** Agents name known roles and issuers, have unique names, and no identity can match two of them. */
function checkAgents(config: Config, roles: Set<string>, checkRule: (rule: object, at: string) => void): string[] {
  const problems: string[] = [];
  const agents = config.agents.register;
  agents.forEach((agent, i) => {
    const at = `agents.register[${i}]`;
    if (agents.findIndex((a) => a.name === agent.name) !== i) problems.push(`${at}.name: duplicate agent '${agent.name}'`);
    agent.roles.forEach((role, j) => {
      if (!roles.has(role)) problems.push(`${at}.roles[${j}]: unknown role '${role}'`);
    });
    checkRule(agent.match, `${at}.match`);
    agent.owner.principals.forEach((rule, j) => checkRule(rule, `${at}.owner.principals[${j}]`));
    const { overlapping } = agentRuleProblems(agent, agents.slice(0, i));
    const { ownerIsAgent } = agentRuleProblems(agent, agents);
    for (const other of overlapping) {
      problems.push(`${at}.match: an identity could match both '${other}' and '${agent.name}'; make the rules narrower (subjects, patterns with different prefixes, or a claim with different values)`);
    }
    if (ownerIsAgent.length > 0) {
      problems.push(`${at}.owner.principals: an owner could be the identity of agent ${ownerIsAgent.map((n) => `'${n}'`).join(', ')}; an agent must not be able to resume itself or another`);
    }
  });
  return problems;
}

/** Validates a config object (from YAML or built in code); `source` names it in errors. */
export function parseConfig(input: unknown, source: string, env: Env = {}): Config {
  let expanded: Record<string, unknown>;
  try {
    expanded = expandEnv(input ?? {}, env, '') as Record<string, unknown>;
  } catch (err) {
    throw err instanceof ConfigError ? new ConfigError(`${source}: ${err.message}`) : err;
  }
  const overrides: Partial<ConfigInput> = {};
  if (env.DATABASE_URL) overrides.database_url = env.DATABASE_URL;
  if (env.PORT) overrides.port = Number(env.PORT);
  if (env.HOST) overrides.host = env.HOST;
  if (env.PUBLIC_URL) overrides.public_url = env.PUBLIC_URL;
  if (env.TASKLEASE_DATA_DIR) overrides.data_dir = env.TASKLEASE_DATA_DIR;
  if (env.METRICS_LISTEN) overrides.metrics = { ...(expanded.metrics as object | undefined), listen: env.METRICS_LISTEN };
  const result = ConfigSchema.safeParse({ ...expanded, ...overrides });
  if (!result.success) throw new ConfigError(formatIssues(source, result.error));
  const problems = crossCheck(result.data);
  if (problems.length > 0) throw new ConfigError(problems.map((p) => `${source}: ${p}`).join('\n'));
  return result.data;
}

/** Reads and validates a YAML config file. */
export function loadConfigFile(file: string, env: Env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${file}: invalid YAML: ${(err as Error).message}`);
  }
  if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) {
    throw new ConfigError(`${file}: the top level must be a mapping`);
  }
  // Dev mode (its dev issuer, its agents registered on sight) is what `npm start` without a file runs, never a file's setting.
  if (doc !== null && 'dev' in doc) throw new ConfigError(`${file}: dev: is set by dev mode only (run without --config); remove it`);
  const config = parseConfig(doc, file, env);
  // Policy files are named relative to the config file that names them.
  config.policy.cedar.files = config.policy.cedar.files.map((f) => resolve(dirname(file), f));
  return config;
}
