import { BackendError, type Backend, type RevokeTarget } from '../../src/backends/types.js';

/**
 * A backend that mints opaque secrets and counts revocations per lease, and
 * can be told to fail (or hang) the next N revocations.
 */
export function createFakeBackend(name = 'fake') {
  const revokeCalls = new Map<string, number>();
  const minted = new Map<string, string>();
  let failNext = 0;
  let hangMs = 0;
  const backend: Backend = {
    name,
    type: 'fake',
    async mint({ leaseId, ttlSeconds, now }) {
      const secret = `fake-secret-${crypto.randomUUID()}`;
      minted.set(leaseId, secret);
      return { credentials: { type: 'fake', secret }, ref: `fake:${leaseId}`, expiresAt: new Date(now.getTime() + ttlSeconds * 1000) };
    },
    async revoke(target: RevokeTarget) {
      if (hangMs > 0) await new Promise((r) => setTimeout(r, hangMs));
      if (failNext > 0) {
        failNext--;
        throw new BackendError('fake_unavailable', 'fake backend is down', true);
      }
      revokeCalls.set(target.leaseId, (revokeCalls.get(target.leaseId) ?? 0) + 1);
    },
  };
  return {
    backend,
    revokeCalls,
    /** Every secret handed out, so tests can look for them where they must not be. */
    secrets: () => [...minted.values()],
    /** The lease id of every credential minted, recorded or not. */
    mintedIds: () => [...minted.keys()],
    failNextRevokes(n: number) {
      failNext = n;
    },
    hangRevokes(ms: number) {
      hangMs = ms;
    },
  };
}
export type FakeBackend = ReturnType<typeof createFakeBackend>;
