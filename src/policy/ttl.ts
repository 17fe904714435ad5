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
