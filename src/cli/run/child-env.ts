import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LeaseHandle } from '../../client/index.js';
import { CliError } from '../command.js';
import type { AwsEndpoint } from './aws-endpoint.js';
import { credentialType, credentialValue, defaultTokenVariable, type Mapping } from './mappings.js';

/** What the child is given, and how its files follow the leases. */
export interface ChildOutputs {
  env: Record<string, string>;
  /** Writes `role`'s files again from its handle's current credentials (after a renewal or re-issue). */
  rewrite(role: string): void;
  /** Removes the private directory and every file in it. */
  remove(): void;
}

/**
 * Each role's defaults when no --env/--file names it: jwt → TASKLEASE_TOKEN_<ROLE>,
 * Vault token mode → VAULT_TOKEN. AWS roles go through the endpoint; the others need a mapping.
 */
function defaults(handles: ReadonlyMap<string, LeaseHandle>, mappings: readonly Mapping[]): Mapping[] {
  const mapped = new Set(mappings.map((m) => m.role));
  const added: Mapping[] = [];
  for (const [role, handle] of handles) {
    const c = handle.credentials;
    if (mapped.has(role) || credentialType(c) === 'aws') continue;
    if (credentialType(c) === 'jwt') added.push({ kind: 'env', name: defaultTokenVariable(role), role });
    else if (credentialType(c) === 'vault' && c.mode === 'token') added.push({ kind: 'env', name: 'VAULT_TOKEN', role });
    else throw new CliError(`role ${role} (${credentialType(c)}) reaches the child by no --env or --file: map its fields, e.g. --env NAME=${role}.field`);
  }
  return added;
}

/**
 * The child's variables and files. Files live in a private directory (0700, each file
 * 0600) and are replaced atomically; an environment variable keeps the value it started with.
 */
export function prepareChildOutputs(handles: ReadonlyMap<string, LeaseHandle>, mappings: readonly Mapping[], aws: AwsEndpoint | undefined): ChildOutputs {
  const all = [...mappings, ...defaults(handles, mappings)];
  const env: Record<string, string> = {};
  let dir: string | undefined;
  const files = all.filter((m) => m.kind === 'file');
  if (files.length) dir = mkdtempSync(join(tmpdir(), 'tasklease-run-'));
  const pathOf = (m: Mapping) => join(dir!, m.name);

  const write = (m: Mapping) => {
    const value = credentialValue(handles.get(m.role)!.credentials, m.role, m.field);
    const temp = `${pathOf(m)}.tmp`;
    writeFileSync(temp, value, { mode: 0o600 });
    renameSync(temp, pathOf(m));
  };

  try {
    for (const m of all) assign(m);
  } catch (err) {
    if (dir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  function assign(m: Mapping) {
    const handle = handles.get(m.role)!;
    if (credentialType(handle.credentials) === 'aws') {
      // The child picks an AWS role by its endpoint URL: `--env NAME=role` hands it that URL, never a key.
      if (m.field !== undefined || m.kind === 'file') throw new CliError(`role ${m.role} is an AWS role: it is served on the loopback endpoint; use --env NAME=${m.role} for its URL`);
      env[m.name] = aws!.uri(m.role);
    } else if (m.kind === 'env') {
      env[m.name] = credentialValue(handle.credentials, m.role, m.field);
    } else {
      write(m);
      env[m.name] = pathOf(m);
    }
  }

  return {
    env,
    rewrite(role) {
      for (const m of files) if (m.role === role) write(m);
    },
    remove() {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
