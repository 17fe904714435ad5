import type { AgentRegistry } from '../agents/registry.js';
import type { Config } from '../config/schema.js';
import type { Principal } from '../identity/principals.js';
import type { Policy } from '../policy/decide.js';

/** The dev login's issuer: dev mode's own (config/dev.ts). */
export const DEV_LOGIN_ISSUER = 'dev';

/**
 * What a signed-in person is, in words, from the principals, the roles' approvers and (when given) the
 * agents it owns; empty when nothing.
 */
export function describePrincipal(principal: Principal, policy: Policy, owns: string[] = []): string {
  const what: string[] = [];
  if (principal.admin) what.push('admin');
  if (principal.orchestrator) what.push('orchestrator');
  const identity = principal.identity;
  const approves = identity && !principal.admin ? policy.roleNames().filter((r) => policy.isApprover(r, identity)) : [];
  if (approves.length > 0) what.push(`approver of ${approves.join(', ')}`);
  if (owns.length > 0) what.push(`owner of ${owns.join(', ')}`);
  return what.join(', ');
}

/**
 * The login's check, for both the dev login and OIDC: what the person is, owners of registered agents
 * included (asked of the registry, by the owner principals isOwner matches); empty: the console has
 * nothing for it. `owns` says which agents, so the login can land an owner on the Agents page.
 */
export async function describePerson(principal: Principal, policy: Policy, registry: Pick<AgentRegistry, 'ownedBy'>): Promise<{ what: string; owns: string[] }> {
  // An admin acts on every agent: listing what it owns as well says nothing more.
  const owns = principal.admin ? [] : await registry.ownedBy(principal.identity);
  return { what: describePrincipal(principal, policy, owns), owns };
}

/** The subjects the dev login offers: the dev issuer's exact subjects among admins, orchestrators, approvers and agents' owners. */
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
  for (const agent of config.agents.register) for (const p of agent.owner.principals) add(p, `owner of ${agent.name}`);
  return [...found].map(([subject, what]) => ({ subject, what: [...what].join(', ') }));
}
