/**
 * Operator policies for the bench: `n` forbids over the task's labels, the
 * agent's claims and labels, the role and the time, none of which matches the
 * bench's requests, so every decision evaluates them all and still allows.
 */
export function operatorPolicies(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const when = [
      `context.task.hasTag("team-${i}") && context.task.getTag("team-${i}") == "x"`,
      `principal.hasTag("claim-${i}") && principal.getTag("claim-${i}") like "forbidden-*"`,
      `principal.labels.contains("class=blocked-${i}")`,
      `resource == Tasklease::Role::"retired-${i}" || (context.hour == 25 && context.ttl_seconds > ${i})`,
    ][i % 4];
    out.push(`@id("op:${i}")\nforbid (principal, action == Tasklease::Action::"RequestCredential", resource)\nwhen { ${when} };`);
  }
  return out.join('\n\n') + '\n';
}

/** A policy on what is held, as examples/policies/customer-data-no-egress.cedar: it never matches the bench's role, but every request must read what is held. */
export const HELD_POLICY = `@id("no-egress-with-customer-data")
forbid (principal, action == Tasklease::Action::"RequestCredential", resource)
when { context.agent_role_labels.contains("data=customer") && resource.hasTag("egress") };
`;
