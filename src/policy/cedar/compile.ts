import type { PolicyConfig } from '../../config/policy.js';
import type { RoleConfig } from '../../config/schema.js';

/** One Cedar policy and where it came from: a file and the line it starts on, or the YAML config. */
export interface PolicySource {
  id: string;
  text: string;
  origin: string;
  file?: { path: string; line: number };
}

/** The line (from 1) of `offset` in `text`: where Cedar's offsets point in a file. */
export const lineAt = (text: string, offset: number) => text.slice(0, offset).split('\n').length;

/** A Cedar string literal. */
export const lit = (s: string) => JSON.stringify(s);

/** The id of a role's `i`th allow rule, as both its policy and the Agent's `matches` name it. */
export const allowRuleId = (role: string, i: number) => `role:${role}:allow:${i}`;

const REQUEST = 'action == Tasklease::Action::"RequestCredential"';
const action = (name: string) => `action == Tasklease::Action::${lit(name)}`;
const role = (name: string) => `Tasklease::Role::${lit(name)}`;

/**
 * Today's YAML rules as Cedar policies, with stable ids:
 * - `role:<name>:allow:<i>` permits a role to the identities of its `i`th
 *   allow rule (which the broker matches, patterns and all: `principal.matches`);
 * - `role:<name>:approval` gates a role with `requires_approval`;
 * - `approval:<rule>` gates what an approval rule's labels select;
 * - `conflict:<name>` forbids a role of a conflict set while the others are
 *   held (in the task, or by the agent across tasks): annotated
 *   `@conflict(...)`, so that its refusal is `role_conflict`;
 * - `base:renew`, `base:open-task` and `base:approve` permit the other
 *   actions, which the YAML decides before policy does (the agent's own
 *   lease; orchestrators and their scopes; approvers): policies narrow them.
 *
 * Gates are `forbid` policies annotated `@approval(...)`: forbidden unless an
 * approver decides (policy/cedar/engine.ts). A role's own gate comes before
 * the rules, which keep their order: the first gate that applies names the
 * approval, as before.
 */
export function compileYaml(roles: RoleConfig[], policy: PolicyConfig | undefined): PolicySource[] {
  const out: PolicySource[] = [];
  for (const r of roles) {
    r.allow.forEach((_, i) => {
      const id = allowRuleId(r.name, i);
      out.push({ id, origin: `roles.${r.name}.allow[${i}]`, text: `permit (principal, ${REQUEST}, resource == ${role(r.name)})\nwhen { principal.matches.contains(${lit(id)}) };` });
    });
  }
  for (const r of roles) {
    if (!r.requires_approval) continue;
    out.push({ id: `role:${r.name}:approval`, origin: `roles.${r.name}.requires_approval`, text: `@approval(${lit(`role:${r.name}`)})\nforbid (principal, ${REQUEST}, resource == ${role(r.name)});` });
  }
  for (const rule of policy?.approvals.rules ?? []) {
    const conditions = [
      ...(rule.roles ? [`(${rule.roles.map((n) => `resource == ${role(n)}`).join(' || ')})`] : []),
      ...Object.entries(rule.labels).map(([k, v]) => `(context.task.hasTag(${lit(k)}) && context.task.getTag(${lit(k)}) == ${lit(v)})`),
      ...Object.entries(rule.agent_labels).map(([k, v]) => `principal.labels.contains(${lit(`${k}=${v}`)})`),
    ];
    out.push({
      id: `approval:${rule.name}`,
      origin: `policy.approvals.rules.${rule.name}`,
      text: `@approval(${lit(`rule:${rule.name}`)})\nforbid (principal, ${REQUEST}, resource)\nwhen { ${conditions.join(' && ')} };`,
    });
  }
  for (const conflict of policy?.conflicts ?? []) {
    const held = conflict.scope === 'task' ? 'context.task_roles' : 'context.agent_roles';
    const each = conflict.roles.map((r) => `(resource == ${role(r)} && ${held}.containsAll([${conflict.roles.filter((o) => o !== r).map(lit).join(', ')}]))`);
    out.push({
      id: `conflict:${conflict.name}`,
      origin: `policy.conflicts.${conflict.name}`,
      text: `@conflict(${lit(conflict.name)})\nforbid (principal, ${REQUEST}, resource)\nwhen { ${each.join(' || ')} };`,
    });
  }
  for (const [id, name] of [
    ['base:renew', 'Renew'],
    ['base:open-task', 'OpenTask'],
    ['base:approve', 'Approve'],
  ] as const) {
    out.push({ id, origin: 'tasklease', text: `permit (principal, ${action(name)}, resource);` });
  }
  return out;
}
