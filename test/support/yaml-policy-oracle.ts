// The YAML decision as it was before Cedar decided (src/policy/decide.ts at 5f7ae79), kept as the oracle
// test/policy/cedar-equivalence.test.ts compares the Cedar-compiled decisions with. Do not change it.
import type { PolicyConfig } from '../../src/config/policy.js';
import type { RoleConfig } from '../../src/config/schema.js';
import { compileRules, type IdentityMatcher } from '../../src/identity/match.js';
import { agentRefusal, outsideCeiling, type CredentialRequest, type DenyCode } from '../../src/policy/decide.js';
import { clampTtl } from '../../src/policy/ttl.js';

type Decision =
  | { allow: true; role: RoleConfig; ttlSeconds: number; approvalRequiredBy?: string }
  | { allow: false; code: DenyCode; reason: string };
interface Policy {
  decide(request: CredentialRequest): Decision;
}

/** Task labels contain every label the rule names. */
const labelsMatch = (labels: Record<string, string>, want: Record<string, string>) =>
  Object.entries(want).every(([k, v]) => labels[k] === v);

/**
 * Roles compiled once at start-up. The decision is made in a fixed order and
 * the first refusal wins; refusals that would reveal what exists (another
 * agent's task, a role that is not configured) share the public code of a
 * missing one, and keep their real reason for the audit trail.
 */
export function createYamlPolicy(roles: RoleConfig[], policy?: PolicyConfig, agents: { requireRegistration: boolean } = { requireRegistration: false }): Policy {
  const compiled = new Map<string, { role: RoleConfig; allowed: IdentityMatcher; approvers: IdentityMatcher }>(
    roles.map((role) => [role.name, { role, allowed: compileRules(role.allow), approvers: compileRules(role.approvers) }]),
  );
  const approvalRules = policy?.approvals.rules ?? [];
  return {
    decide({ identity, task, roleName, requestedTtl, now, agent }) {
      const barred = agentRefusal(agent, agents.requireRegistration);
      if (barred) return { allow: false, ...barred };
      if (!task) return { allow: false, code: 'task_not_found', reason: 'no such task' };
      const bound = task.agentSubject === identity.subject && (task.agentIssuer === null || task.agentIssuer === identity.issuer);
      if (!bound) return { allow: false, code: 'task_not_found', reason: 'task is bound to another agent' };
      if (task.status !== 'open') return { allow: false, code: 'task_not_open', reason: `task is ${task.status}` };
      const entry = compiled.get(roleName);
      if (!entry) return { allow: false, code: 'role_denied', reason: 'unknown role' };
      if (!task.roles.includes(roleName)) return { allow: false, code: 'role_denied', reason: 'role not allowed by task' };
      if (!entry.allowed(identity)) return { allow: false, code: 'role_denied', reason: "identity not in role's allow rules" };
      const ceiling = outsideCeiling(agent, roleName);
      if (ceiling) return { allow: false, ...ceiling };
      const ttlSeconds = clampTtl({
        requested: requestedTtl,
        roleDefault: entry.role.ttl,
        roleMax: entry.role.max_ttl,
        deadline: task.deadline,
        now,
      });
      if (ttlSeconds < 1) return { allow: false, code: 'task_expired', reason: 'task deadline has passed' };
      const agentLabels = agent?.kind === 'agent' ? agent.agent.labels : {};
      const rule = approvalRules.find(
        (r) => (!r.roles || r.roles.includes(roleName)) && labelsMatch(task.labels ?? {}, r.labels) && labelsMatch(agentLabels, r.agent_labels),
      );
      const approvalRequiredBy = entry.role.requires_approval ? `role:${roleName}` : rule ? `rule:${rule.name}` : undefined;
      return { allow: true, role: entry.role, ttlSeconds, ...(approvalRequiredBy ? { approvalRequiredBy } : {}) };
    },
  };
}
