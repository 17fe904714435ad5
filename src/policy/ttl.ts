/**
 * TTL = min(requested or the role's default, the role's maximum, time left
 * before the task's deadline), in whole seconds. Zero or less means the task
 * has no time left to grant.
 */
export function clampTtl(input: {
  requested: number | undefined;
  roleDefault: number;
  roleMax: number;
  deadline: Date;
  now: Date;
}): number {
  const left = Math.floor((input.deadline.getTime() - input.now.getTime()) / 1000);
  return Math.min(input.requested ?? input.roleDefault, input.roleMax, left);
}

/**
 * The latest a credential may ever live to, whatever renewals follow: its
 * role's `max_ttl` from issue, the task's deadline, and, for a credential
 * redeemed from an approval, the TTL the approver saw. Issuance hands it to
 * the backend (Vault's `explicit_max_ttl`), so the backend itself enforces
 * it; renewal never goes past it. Tests: test/backends/vault.test.ts (a
 * token renew-self cannot pass the deadline), test/policy/approvals.test.ts
 * (renewal stops at the approved TTL).
 */
export function credentialCeiling(input: { issuedAt: Date; roleMaxTtl: number; deadline: Date; approvedTtl?: number | null }): Date {
  const issued = input.issuedAt.getTime();
  const approved = input.approvedTtl == null ? Infinity : issued + input.approvedTtl * 1000;
  return new Date(Math.min(issued + input.roleMaxTtl * 1000, input.deadline.getTime(), approved));
}
