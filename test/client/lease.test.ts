// The lease handle over fake lease calls and fake timers: a re-issue keeps the
// old lease until its own expiry and `release()` ends both; `release()` waits
// for a re-issue in flight; a throwing `onChange` skips nothing.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LeaseHandle, TaskleaseError, type Lease } from 'tasklease/client';

const MINUTE = 60_000;

/** A broker of leases in memory: each lease lives a minute, renewal is refused, `issue` can be held open. */
function fakeBroker() {
  const status = new Map<string, string>();
  let next = 0;
  let hold: { promise: Promise<void>; open: () => void } | undefined;
  const lease = (id: string): Lease => ({ id, status: status.get(id), expires_at: new Date(Date.now() + MINUTE).toISOString() }) as Lease;
  const issue = () => {
    const id = `lease-${++next}`;
    status.set(id, 'active');
    return { lease: lease(id), credentials: { token: id }, serverNow: Date.now() };
  };
  const calls = {
    async issue() {
      await hold?.promise;
      return issue();
    },
    async renew(): Promise<never> {
      throw new TaskleaseError('not_renewable', 409, 'the role is not renewable');
    },
    async release(id: string) {
      status.set(id, 'revoked');
      return lease(id);
    },
  };
  return {
    calls,
    status,
    first: issue(),
    /** Makes the next `issue` wait until `open()` is called. */
    holdIssue() {
      let open!: () => void;
      hold = { promise: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
      return hold.open;
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('a re-issued lease handle', () => {
  it('keeps the old lease active until its own expiry, then releases it', async () => {
    const broker = fakeBroker();
    const changes: string[] = [];
    const handle = new LeaseHandle(broker.calls, 'task', 'role', broker.first, { reissue: true, onChange: (h) => changes.push(h.lease.id) });
    // Renewal is tried when a third of the minute is left; refused, the handle re-issues.
    await vi.advanceTimersByTimeAsync(45_000);
    expect(changes).toEqual(['lease-2']);
    expect(handle.credentials).toEqual({ token: 'lease-2' });
    // The child may still hold lease-1's credential until it expires.
    expect(broker.status.get('lease-1')).toBe('active');
    await vi.advanceTimersByTimeAsync(14_000);
    expect(broker.status.get('lease-1')).toBe('active');
    await vi.advanceTimersByTimeAsync(2_000);
    expect(broker.status.get('lease-1')).toBe('revoked');
    expect(broker.status.get('lease-2')).toBe('active');
    await handle.release();
    expect(broker.status.get('lease-2')).toBe('revoked');
  });

  it('ends the old lease and the new one on release()', async () => {
    const broker = fakeBroker();
    const handle = new LeaseHandle(broker.calls, 'task', 'role', broker.first, { reissue: true });
    await vi.advanceTimersByTimeAsync(45_000);
    expect(handle.lease.id).toBe('lease-2');
    expect(broker.status.get('lease-1')).toBe('active');
    await handle.release();
    expect(Object.fromEntries(broker.status)).toEqual({ 'lease-1': 'revoked', 'lease-2': 'revoked' });
  });

  it('waits in release() for a re-issue in flight, and releases what it issued', async () => {
    const broker = fakeBroker();
    const open = broker.holdIssue();
    const handle = new LeaseHandle(broker.calls, 'task', 'role', broker.first, { reissue: true });
    await vi.advanceTimersByTimeAsync(45_000); // the re-issue is now waiting for its answer
    let released = false;
    const releasing = handle.release().then(() => (released = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(released).toBe(false);
    open();
    await releasing;
    expect(Object.fromEntries(broker.status)).toEqual({ 'lease-1': 'revoked', 'lease-2': 'revoked' });
    expect(handle.renewing).toBe(false);
  });

  it('reports a throwing onChange through onError and still releases the old lease', async () => {
    const broker = fakeBroker();
    const errors: unknown[] = [];
    const bug = new Error('a bug in onChange');
    const handle = new LeaseHandle(broker.calls, 'task', 'role', broker.first, {
      reissue: true,
      onChange: () => {
        throw bug;
      },
      onError: (err) => errors.push(err),
    });
    await vi.advanceTimersByTimeAsync(45_000);
    expect(handle.lease.id).toBe('lease-2');
    expect(errors.at(-1)).toBe(bug);
    // The new lease is still looked after: it is re-issued in turn when it cannot be renewed.
    expect(handle.renewing).toBe(true);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(broker.status.get('lease-1')).toBe('revoked');
    await handle.release();
    expect([...broker.status.values()].every((s) => s === 'revoked')).toBe(true);
  });
});
