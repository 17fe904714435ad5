// The conflict check as policy/limits.ts made it before conflicts were Cedar policies (at 9c95115), on the
// roles held rather than the leases table, kept as the oracle test/policy/cedar-equivalence.test.ts compares
// the compiled `conflict:<name>` policies with. Do not change it.
import type { PolicyConfig } from '../../src/config/policy.js';

/** Role → its oldest held lease id: in the task, and by the agent across its tasks. */
export interface HeldLeases {
  task: Map<string, string>;
  agent: Map<string, string>;
}

/** The first conflict (in config order) the role would complete, and the held lease it names; none, undefined. */
export function conflictOf(policy: PolicyConfig, role: string, held: HeldLeases): { conflict: string; conflictsWith: string } | undefined {
  for (const conflict of policy.conflicts.filter((c) => c.roles.includes(role))) {
    const others = conflict.roles.filter((r) => r !== role);
    const scope = conflict.scope === 'task' ? held.task : held.agent;
    // distinct on role, ordered by role: the first other role's lease.
    const heldOthers = [...others].sort().filter((r) => scope.has(r));
    if (heldOthers.length === others.length) return { conflict: conflict.name, conflictsWith: scope.get(heldOthers[0]!)! };
  }
  return undefined;
}
