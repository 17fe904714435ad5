import type { AgentRegistry } from '../agents/registry.js';
import type { ApprovalService } from '../approvals/service.js';
import type { Principal } from '../identity/principals.js';

/** Which roles a person may approve, as the approval service decides it (undefined: every role). */
type Approvable = Pick<ApprovalService, 'approvableRoles'>;

/**
 * What a signed-in person is, in words, from the principals, the roles' approvers and (when given) the
 * agents it owns; empty when nothing.
 */
export function describePrincipal(principal: Principal, approvals: Approvable, owns: string[] = []): string {
  const what: string[] = [];
  if (principal.admin) what.push('admin');
  if (principal.orchestrator) what.push('orchestrator');
  const approves = principal.admin ? [] : (approvals.approvableRoles(principal) ?? []);
  if (approves.length > 0) what.push(`approver of ${approves.join(', ')}`);
  if (owns.length > 0) what.push(`owner of ${owns.join(', ')}`);
  return what.join(', ');
}

/**
 * The login's check, for both the dev login and OIDC: what the person is, owners of registered agents
 * included (asked of the registry, by the owner principals isOwner matches); empty: the console has
 * nothing for it. `owns` says which agents, so the login can land an owner on the Agents page.
 */
export async function describePerson(principal: Principal, approvals: Approvable, registry: Pick<AgentRegistry, 'ownedBy'>): Promise<{ what: string; owns: string[] }> {
  // An admin acts on every agent: listing what it owns as well says nothing more.
  const owns = principal.admin ? [] : await registry.ownedBy(principal.identity);
  return { what: describePrincipal(principal, approvals, owns), owns };
}


/**
 * Where a person lands after signing in: the Approvals page for admins and approvers, the Tasks page for an
 * orchestrator who approves nothing, the Agents page for a person who only owns agents.
 */
export function landing(principal: Principal, approvals: Approvable): string {
  if (principal.admin || (approvals.approvableRoles(principal) ?? []).length > 0) return '/console/approvals';
  if (principal.orchestrator) return '/console/tasks';
  return '/console/agents';
}
