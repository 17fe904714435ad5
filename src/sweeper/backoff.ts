/**
 * Delay before retry number `attempts` (1-based): exponential from `baseMs`,
 * capped, with equal jitter (half fixed, half random) so that replicas retrying
 * the same outage spread out but never retry immediately.
 */
export function backoffMs(attempts: number, baseMs = 1000, capMs = 300_000, random = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
