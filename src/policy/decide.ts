import type { RoleConfig } from '../config/schema.js';
import type { Task } from '../db/schema.js';
import { compileRules, type IdentityMatcher } from '../identity/match.js';
import type { Identity } from '../identity/types.js';
import { clampTtl } from './ttl.js';

export type Decision =
  | { allow: true; role: RoleConfig; ttlSeconds: number }
  | { allow: false; code: DenyCode; reason: string };

/** Stable reasons a credential request is refused (mapped to HTTP statuses in http/problem.ts). */
export type DenyCode = 'task_not_found' | 'task_not_bound' | 'task_not_open' | 'task_expired' | 'role_denied';

export interface CredentialRequest {
  identity: Identity;
  task: Task | undefined;
  roleName: string;
  requestedTtl: number | undefined;
  now: Date;
}

export interface Policy {
  decide(request: CredentialRequest): Decision;
  role(name: string): RoleConfig | undefined;
}

/** Roles compiled once at start-up: each role's trust rules become one matcher. */
export function createPolicy(roles: RoleConfig[]): Policy {
  const compiled = new Map<string, { role: RoleConfig; allowed: IdentityMatcher }>(
    roles.map((role) => [role.name, { role, allowed: compileRules(role.allow) }]),
  );
  return {
    role: (name) => compiled.get(name)?.role,
    decide({ identity, task, roleName, requestedTtl, now }) {
      if (!task) return { allow: false, code: 'task_not_found', reason: 'no such task' };
      const bound =
        task.agentSubject === identity.subject && (task.agentIssuer === null || task.agentIssuer === identity.issuer);
      if (!bound) return { allow: false, code: 'task_not_bound', reason: 'task is bound to another agent' };
      if (task.status !== 'open') return { allow: false, code: 'task_not_open', reason: `task is ${task.status}` };
      const entry = compiled.get(roleName);
      // The three role refusals share one public code so a caller cannot probe which roles exist.
      if (!entry) return { allow: false, code: 'role_denied', reason: 'unknown role' };
      if (!task.roles.includes(roleName)) return { allow: false, code: 'role_denied', reason: 'role not allowed by task' };
      if (!entry.allowed(identity)) return { allow: false, code: 'role_denied', reason: "identity not in role's allow rules" };
      const ttlSeconds = clampTtl({
        requested: requestedTtl,
        roleDefault: entry.role.ttl,
        roleMax: entry.role.max_ttl,
        deadline: task.deadline,
        now,
      });
      if (ttlSeconds < 1) return { allow: false, code: 'task_expired', reason: 'task deadline has passed' };
      return { allow: true, role: entry.role, ttlSeconds };
    },
  };
}
