import type { Credentials } from '../../client/index.js';
import { CliError } from '../command.js';

/** One `--env NAME=role[.field]` or `--file NAME=role[.field]`: where a credential value goes in the child. */
export interface Mapping {
  kind: 'env' | 'file';
  /** The environment variable set in the child (for a file: to the file's path). */
  name: string;
  role: string;
  /** A dotted path into the credentials (for Vault: into `credentials.data`); none for the role's token. */
  field?: string;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses `NAME=role[.field]`. Role names may hold dots, so the role is the
 * longest `--role` the value starts with, followed by the end or a dot.
 */
export function parseMapping(kind: Mapping['kind'], spec: string, roles: readonly string[]): Mapping {
  const eq = spec.indexOf('=');
  const name = spec.slice(0, eq);
  const target = spec.slice(eq + 1);
  if (eq < 1 || !ENV_NAME.test(name)) throw new CliError(`--${kind} ${JSON.stringify(spec)}: expected NAME=role[.field] with NAME an environment variable name`);
  const role = [...roles].sort((a, b) => b.length - a.length).find((r) => target === r || target.startsWith(`${r}.`));
  if (!role) throw new CliError(`--${kind} ${name}=...: ${JSON.stringify(target)} names no --role`);
  const field = target.slice(role.length + 1) || undefined;
  return { kind, name, role, field };
}

/** TASKLEASE_TOKEN_<ROLE>: the role upper-cased, every other character than A-Z and 0-9 made `_`. */
export const defaultTokenVariable = (role: string) => `TASKLEASE_TOKEN_${role.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;

/** The credential's kind as the broker's backends name it: `jwt`, `vault`, `aws`, ... */
export const credentialType = (credentials: Credentials) => (typeof credentials.type === 'string' ? credentials.type : 'unknown');

/**
 * The value a mapping stands for. Without a field: the role's token (jwt, Vault token mode).
 * With one: a dotted path into `credentials.data` for Vault, into the credentials otherwise.
 * Errors name the role and field, never a value.
 */
export function credentialValue(credentials: Credentials, role: string, field: string | undefined): string {
  if (field === undefined) {
    if (typeof credentials.token === 'string') return credentials.token;
    throw new CliError(`role ${role} (${credentialType(credentials)}) has no single token: name a field, e.g. ${role}.password`);
  }
  let value: unknown = credentialType(credentials) === 'vault' ? credentials.data : credentials;
  for (const key of field.split('.')) value = typeof value === 'object' && value !== null && Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new CliError(`role ${role} has no text field ${field}`);
}
