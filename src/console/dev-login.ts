import type { Config } from '../config/schema.js';
import type { Principal } from '../identity/principals.js';
import type { Policy } from '../policy/decide.js';

/** The dev login's issuer: dev mode's own (config/dev.ts). */
export const DEV_LOGIN_ISSUER = 'dev';

/** What a signed-in person is, in words, from the principals and the roles' approvers; empty when nothing. */
export function describePrincipal(principal: Principal, policy: Policy): string {
  const what: string[] = [];
  if (principal.admin) what.push('admin');
  if (principal.orchestrator) what.push('orchestrator');
  const identity = principal.identity;
  const approves = identity && !principal.admin ? policy.roleNames().filter((r) => policy.isApprover(r, identity)) : [];
  if (approves.length > 0) what.push(`approver of ${approves.join(', ')}`);
  return what.join(', ');
}

/** The subjects the dev login offers: the dev issuer's exact subjects among admins, orchestrators and approvers. */
export function devSuggestions(config: Config): { subject: string; what: string }[] {
  const found = new Map<string, Set<string>>();
  const add = (rule: unknown, what: string) => {
    const r = rule as { issuer?: string; subject?: string };
    if (r.issuer !== DEV_LOGIN_ISSUER || !r.subject) return;
    found.set(r.subject, (found.get(r.subject) ?? new Set()).add(what));
  };
  for (const p of config.principals.admins) add(p, 'admin');
  for (const p of config.principals.orchestrators) add(p, 'orchestrator');
  for (const role of config.roles) for (const a of role.approvers) add(a, `approver of ${role.name}`);
  return [...found].map(([subject, what]) => ({ subject, what: [...what].join(', ') }));
}
