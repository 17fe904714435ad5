import { unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '../../log.js';
import type { Policy } from '../decide.js';
import { PolicyLoadError } from './engine.js';
import { readPolicyFiles } from './files.js';

export interface PolicyStatus {
  /** The first 16 hex digits of the SHA-256 of the set in force. */
  set: string;
  /** Why the last reload failed (the set in force stayed); absent once one succeeds. */
  reloadError?: string;
}

/**
 * Reloads the operator's Cedar files into `policy` (on SIGHUP, or when one
 * changes): a set that does not load leaves the one in force, and says so in
 * the log, the metric and readiness (degraded) until a reload succeeds
 * (test/policy/cedar-reload.test.ts).
 */
export interface ReloadOutcome {
  why: string;
  /** The set in force before, and after (the same when the reload was refused). */
  from: string;
  to: string;
  /** Why the new set was refused. */
  problems?: string[];
}

export function createPolicyReloader(deps: {
  policy: Policy;
  files: string[];
  log: Logger;
  onFailure?: () => void;
  /** Told of every reload, refused or not (the broker audits it). */
  onReload?: (outcome: ReloadOutcome) => void;
  baseDir?: string;
}) {
  let reloadError: string | undefined;
  const reload = (why: string): boolean => {
    const before = deps.policy.cedar.hash;
    try {
      deps.policy.reload(readPolicyFiles(deps.files, deps.baseDir ?? process.cwd()));
    } catch (err) {
      reloadError = err instanceof PolicyLoadError ? err.problems.join('; ') : (err as Error).message;
      deps.onFailure?.();
      const problems = err instanceof PolicyLoadError ? err.problems : [reloadError];
      deps.log.error({ why, problems, set: before.slice(0, 16) }, 'the policies did not reload; the set in force stays');
      deps.onReload?.({ why, from: before.slice(0, 16), to: before.slice(0, 16), problems });
      return false;
    }
    reloadError = undefined;
    const after = deps.policy.cedar.hash;
    deps.log.info({ why, set: after.slice(0, 16), changed: after !== before }, 'policies reloaded');
    if (after !== before) deps.onReload?.({ why, from: before.slice(0, 16), to: after.slice(0, 16) });
    return true;
  };
  return {
    reload,
    status: (): PolicyStatus => ({ set: deps.policy.cedar.hash.slice(0, 16), ...(reloadError ? { reloadError } : {}) }),
    /** Reloads when a file changes (polled each `intervalMs`: an editor's rename is seen too); returns the stop. */
    watch(intervalMs = 1000): () => void {
      const listener = (now: { mtimeMs: number }, before: { mtimeMs: number }) => {
        if (now.mtimeMs !== before.mtimeMs) reload('a policy file changed');
      };
      for (const file of deps.files) watchFile(file, { interval: intervalMs, persistent: false }, listener);
      return () => {
        for (const file of deps.files) unwatchFile(file, listener);
      };
    },
  };
}
export type PolicyReloader = ReturnType<typeof createPolicyReloader>;
