import type { Resolution } from '../agents/registry.js';
import type { PolicyConfig } from '../config/policy.js';
import type { RoleConfig } from '../config/schema.js';
import type { Task } from '../db/schema.js';
import { compileRule, compileRules, matchAll, type IdentityMatcher } from '../identity/match.js';
import type { Identity } from '../identity/types.js';
import { allowRuleId, compileYaml, type PolicySource } from './cedar/compile.js';
import { loadCedar, type CedarEngine, type Verdict } from './cedar/engine.js';

/** A policy that reads what is held, so that its requests must say (a conservative test of the text). */
const READS_HELD = /\b(task|agent)_role(s|_labels)\b/;
import { approveRequest, credentialRequest, openTaskRequest, renewRequest, requestKey, type Caller } from './cedar/request.js';
import type { Held } from './limits.js';
import { clampTtl } from './ttl.js';

export type Decision =
  | {
      allow: true;
      role: RoleConfig;
      ttlSeconds: number;
      /** Set when an approver must decide first: the role, or the label rule that requires it. */
      approvalRequiredBy?: string;
      /** The Cedar policies that determined it (policy/cedar/engine.ts). */
      policies: string[];
    }
  | {
      allow: false;
      code: DenyCode;
      reason: string;
      policies?: string[];
      /** A `role_conflict`: the conflict's name, and for a YAML conflict the oldest held lease it conflicts with. */
      conflict?: { name: string; with?: string };
    };

/** A decision on an action that is not a credential request (Renew, OpenTask, Approve). */
export type Permission = { allow: true; policies: string[] } | { allow: false; reason: string; policies: string[] };

/** Stable reasons a credential request is refused (mapped to HTTP statuses in errors.ts). */
export type DenyCode = 'task_not_found' | 'task_not_open' | 'task_expired' | 'role_denied' | 'role_conflict' | AgentDenyCode;
export type AgentDenyCode = 'agent_suspended' | 'agent_not_registered' | 'policy_error';

/**
 * What the registry says of the caller, before anything else is looked at: a
 * suspended agent hears so whatever it asks for; an identity that matches two
 * agents is refused (the registry must stay unambiguous); with registration
 * required, an identity no agent matches gets nothing.
 */
export function agentRefusal(agent: Resolution | undefined, requireRegistration: boolean): { code: AgentDenyCode; reason: string } | undefined {
  if (agent?.kind !== 'refused' && agent?.suspension) {
    const s = agent.suspension;
    return { code: 'agent_suspended', reason: s.agent ? `agent ${s.agent} is suspended: ${s.reason}` : `identity suspended by rule (suspension ${s.id}): ${s.reason}` };
  }
  if (agent?.kind === 'refused') return { code: 'policy_error', reason: `${agent.why} (${agent.names.join(', ')})` };
  if (requireRegistration && agent?.kind !== 'agent') return { code: 'agent_not_registered', reason: 'the identity matches no registered agent' };
  return undefined;
}

/** The agent's ceiling: the roles it may ever hold. An unregistered identity has none to apply. */
export function outsideCeiling(agent: Resolution | undefined, roleName: string): { code: 'role_denied'; reason: string } | undefined {
  if (agent?.kind !== 'agent' || agent.agent.roles.includes(roleName)) return undefined;
  return { code: 'role_denied', reason: `role ${roleName} is outside agent ${agent.agent.name}'s ceiling` };
}

/** Whether `task` is bound to `identity`: the one rule for "its own task". */
export const boundTo = (task: Pick<Task, 'agentIssuer' | 'agentSubject'>, identity: Pick<Identity, 'issuer' | 'subject'>) =>
  task.agentSubject === identity.subject && (task.agentIssuer === null || task.agentIssuer === identity.issuer);

export interface CredentialRequest {
  identity: Identity;
  task: Task | undefined;
  roleName: string;
  requestedTtl: number | undefined;
  now: Date;
  /** Who the registry says the identity is (agents/registry.ts); absent, an unregistered identity. */
  agent?: Resolution;
  /** The roles held now (policy/limits.ts heldRoles): required when `heldMatters(roleName)`, or it is refused. */
  held?: Held;
  /** A delegated request (oauth/exchange.ts): the person the credential is for, `issuer/subject`. */
  onBehalfOf?: string;
}

export interface Policy {
  decide(request: CredentialRequest): Decision;
  role(name: string): RoleConfig | undefined;
  roleNames(): string[];
  /** May this identity approve requests for this role (besides admins)? */
  isApprover(roleName: string, identity: Identity): boolean;
  /** Whether a policy on this role reads what is held (a conflict, an operator's policy): its request must say, and its commit re-decide under lock. */
  heldMatters(roleName: string): boolean;
  /** Policy on an agent renewing its own lease (after the broker's own checks). */
  mayRenew(input: { identity: Identity; agent?: Resolution; task: Task; role: RoleConfig; lease: string; ttlSeconds: number; approved: boolean; now: Date }): Permission;
  /** Policy on an orchestrator opening a task (after its scopes). */
  mayOpen(input: { caller: Caller; task: Task; now: Date }): Permission;
  /** Policy on an approver approving (after the role's approvers). */
  mayApprove(input: { caller: Caller; task: Task; role: RoleConfig; requester: string; requiredBy: string; ttlSeconds: number; now: Date }): Permission;
  /** With registration required, an identity no agent matches gets no credential. */
  readonly requireRegistration: boolean;
  /** The Cedar policy set every decision is made by: its hash and ids. */
  readonly cedar: Pick<CedarEngine, 'hash' | 'ids'>;
  /**
   * Replaces the operator's policies (the YAML's stay as they are): the next decision is made by the new
   * set. Throws PolicyLoadError, and keeps the set in force, when the new one does not load.
   */
  reload(cedar: PolicySource[]): void;
}

export interface PolicyOptions {
  requireRegistration: boolean;
  /** The operator's own Cedar policies (policy/cedar/files.ts), after those compiled from the YAML. */
  cedar?: PolicySource[];
  /** A backend's type by its name; the Role's `backend_type`. */
  backendType?: (name: string) => string;
}

/**
 * Roles compiled once at start-up. The decision is made in a fixed order and
 * the first refusal wins: the registry, the task (bound to this agent, open,
 * listing the role), then Cedar (policy/cedar/: the YAML's allow and
 * approval rules compiled to policies, and the operator's own), the agent's
 * ceiling and the TTL. Refusals that would reveal what exists (another
 * agent's task, a role that is not configured) share the public code of a
 * missing one, and keep their real reason for the audit trail.
 */
export function createPolicy(roles: RoleConfig[], policy?: PolicyConfig, options: PolicyOptions = { requireRegistration: false }): Policy {
  const compiled = new Map<string, { role: RoleConfig; allowRules: { id: string; matches: IdentityMatcher }[]; approvers: IdentityMatcher }>(
    roles.map((role) => [role.name, { role, allowRules: role.allow.map((rule, i) => ({ id: allowRuleId(role.name, i), matches: compileRule(rule) })), approvers: compileRules(role.approvers) }]),
  );
  const yaml = compileYaml(roles, policy);
  const conflicts = new Map((policy?.conflicts ?? []).map((c) => [c.name, c]));
  const inConflict = new Set([...conflicts.values()].flatMap((c) => c.roles));
  const load = (cedar: PolicySource[]) => ({ engine: loadCedar([...yaml, ...cedar]), readsHeld: cedar.some((p) => READS_HELD.test(p.text)) });
  let loaded = load(options.cedar ?? []);
  const backendType = options.backendType ?? (() => 'jwt');
  const labelsOf = (name: string) => compiled.get(name)?.role.labels;
  const heldMatters = (roleName: string) => loaded.readsHeld || inConflict.has(roleName);
  /** The oldest held lease a YAML conflict's refusal names: of its first other role, in its scope. */
  const conflictWith = (name: string, roleName: string, held: Held | undefined) => {
    const c = conflicts.get(name);
    const other = c?.roles.filter((r) => r !== roleName).sort()[0];
    return other === undefined ? undefined : (c!.scope === 'task' ? held?.task : held?.agent)?.get(other);
  };
  const permission = (verdict: Verdict): Permission =>
    verdict.decision === 'allow'
      ? { allow: true, policies: verdict.policies }
      : {
          allow: false,
          policies: verdict.policies,
          reason:
            verdict.decision === 'approval'
              ? `an approval gate (${verdict.requiredBy}) applies only to credential requests`
              : (verdict.error ?? (verdict.policies.length > 0 ? `forbidden by policy ${verdict.policies.join(', ')}` : 'no policy permits it')),
        };
  return {
    requireRegistration: options.requireRegistration,
    get cedar() {
      return loaded.engine;
    },
    reload(cedar) {
      loaded = load(cedar);
    },
    heldMatters,
    mayRenew: (input) => permission(loaded.engine.authorize(renewRequest({ ...input, backendType: backendType(input.role.backend) }))),
    mayOpen: (input) => permission(loaded.engine.authorize(openTaskRequest(input))),
    mayApprove: (input) => permission(loaded.engine.authorize(approveRequest({ ...input, backendType: backendType(input.role.backend) }))),
    role: (name) => compiled.get(name)?.role,
    roleNames: () => [...compiled.keys()],
    isApprover: (roleName, identity) => compiled.get(roleName)?.approvers(identity) ?? false,
    decide({ identity, task, roleName, requestedTtl, now, agent, held, onBehalfOf }) {
      const barred = agentRefusal(agent, options.requireRegistration);
      if (barred) return { allow: false, ...barred };
      if (!task) return { allow: false, code: 'task_not_found', reason: 'no such task' };
      const bound = boundTo(task, identity);
      if (!bound) return { allow: false, code: 'task_not_found', reason: 'task is bound to another agent' };
      if (task.status !== 'open') return { allow: false, code: 'task_not_open', reason: `task is ${task.status}` };
      const entry = compiled.get(roleName);
      if (!entry) return { allow: false, code: 'role_denied', reason: 'unknown role' };
      if (!task.roles.includes(roleName)) return { allow: false, code: 'role_denied', reason: 'role not allowed by task' };
      const ttlSeconds = clampTtl({
        requested: requestedTtl,
        roleDefault: entry.role.ttl,
        roleMax: entry.role.max_ttl,
        deadline: task.deadline,
        now,
      });
      // The TTL asked for as policy sees it: before the task's deadline cuts it (the deadline is the Task's own),
      // so that the same request within a minute stays the same question.
      const askedTtl = Math.min(requestedTtl ?? entry.role.ttl, entry.role.max_ttl);
      // Fail closed: a policy that reads what is held is never asked with nothing held in its place.
      if (!held && heldMatters(roleName)) return { allow: false, code: 'policy_error', reason: 'the roles held were not read for a policy that needs them' };
      const asked = { identity, agent, role: entry.role, backendType: backendType(entry.role.backend), matches: matchAll(entry.allowRules, identity).map((r) => r.id), task, ttlSeconds: askedTtl, now, labelsOf, ...(held ? { held } : {}), ...(onBehalfOf ? { onBehalfOf } : {}) };
      const verdict = loaded.engine.decide(requestKey(asked), () => credentialRequest(asked));
      if (verdict.decision === 'deny' && !verdict.conflict) {
        if (verdict.error) return { allow: false, code: 'policy_error', reason: verdict.error, policies: verdict.policies };
        const reason = verdict.policies.length > 0 ? `forbidden by policy ${verdict.policies.join(', ')}` : 'no policy permits it';
        return { allow: false, code: 'role_denied', reason, policies: verdict.policies };
      }
      const ceiling = outsideCeiling(agent, roleName);
      if (ceiling) return { allow: false, ...ceiling };
      if (ttlSeconds < 1) return { allow: false, code: 'task_expired', reason: 'task deadline has passed' };
      // A conflict is the last refusal: the request is otherwise permitted (policy/cedar/engine.ts).
      if (verdict.decision === 'deny') {
        const conflictsWith = conflictWith(verdict.conflict!, roleName, held);
        return {
          allow: false,
          code: 'role_conflict',
          reason: `holding ${roleName} with what is already held is not allowed (${verdict.conflict}; policy ${verdict.policies.join(', ')})`,
          policies: verdict.policies,
          conflict: { name: verdict.conflict!, ...(conflictsWith ? { with: conflictsWith } : {}) },
        };
      }
      return { allow: true, role: entry.role, ttlSeconds, policies: verdict.policies, ...(verdict.decision === 'approval' ? { approvalRequiredBy: verdict.requiredBy } : {}) };
    },
  };
}
