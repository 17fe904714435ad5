/**
 * A lease handle: the credentials of one lease, renewed before they expire
 * while the role allows it, and released exactly once however the holder
 * leaves (`await handle.release()`, `await using`). It keeps: no renewal is
 * started after release; `release()` called again answers the first call's
 * promise; its timers never keep the process alive. After a re-issue the old
 * lease stays active until its own `expires_at` (a child may still hold its
 * credential: AWS SDKs refresh only minutes before expiry, an env-mapped token
 * never), then it is released; `release()` waits for a renewal or re-issue in
 * flight and ends every lease the handle holds, old and new. A throwing
 * `onChange` goes to `onError` and skips nothing.
 * Proven by test/client/lease.test.ts and test/client/client.test.ts.
 */
import { TaskleaseError } from './errors.js';
import type { components } from './openapi.js';

export type Lease = components['schemas']['Lease'];
export type Credentials = Record<string, unknown>;

// Node 20 has no Symbol.asyncDispose; TypeScript's `await using` looks it up at run time.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('Symbol.asyncDispose');

/** What a handle needs of the client: the three lease calls. */
export interface LeaseCalls {
  issue(task: string, role: string, ttlSeconds: number | undefined): Promise<{ lease: Lease; credentials: Credentials; serverNow: number }>;
  renew(id: string): Promise<{ lease: Lease; serverNow: number }>;
  release(id: string): Promise<Lease>;
}

export interface LeaseHandleOptions {
  ttlSeconds?: number;
  /** Renew before expiry (default true). A `not_renewable` or `renew_limit` answer ends renewal. */
  renew?: boolean;
  /**
   * When the lease cannot be renewed any more, request a new one for the same
   * task and role before it expires (default false). The old lease is kept
   * until its own expiry, then released; `release()` ends both.
   * Read `handle.credentials` again after `onChange`.
   */
  reissue?: boolean;
  /** Renew when this fraction of the remaining life is left (default 1/3). */
  renewAtRemaining?: number;
  /** Called after the lease was renewed or replaced; a throw is passed to `onError`. */
  onChange?: (handle: LeaseHandle) => void;
  /** Called when renewal stopped or failed; the credentials stay valid until `lease.expires_at`. */
  onError?: (error: unknown, handle: LeaseHandle) => void;
}

const STOPS_RENEWAL = new Set(['not_renewable', 'renew_limit']);
/** Never schedule closer than this: a lease about to expire is retried, not hammered. */
const MIN_DELAY_MS = 500;

export class LeaseHandle implements AsyncDisposable {
  #lease: Lease;
  #credentials: Credentials;
  #timer: NodeJS.Timeout | undefined;
  #released: Promise<void> | undefined;
  #renewing = true;
  /** The renewal or re-issue in flight, which `release()` waits for. */
  #ticking: Promise<void> | undefined;
  /** Leases replaced by a re-issue, kept until their own expiry: id -> the timer that releases it then. */
  #older = new Map<string, NodeJS.Timeout>();
  /** The last renewal error, if renewal stopped or failed. */
  renewalError: unknown;

  constructor(
    private readonly calls: LeaseCalls,
    private readonly task: string,
    private readonly role: string,
    issued: { lease: Lease; credentials: Credentials; serverNow: number },
    private readonly options: LeaseHandleOptions = {},
  ) {
    this.#lease = issued.lease;
    this.#credentials = issued.credentials;
    this.#renewing = options.renew !== false;
    this.#schedule(issued.serverNow);
  }

  /** The credentials of the current lease (replaced after a re-issue). */
  get credentials(): Credentials {
    return this.#credentials;
  }

  /** The current lease as the broker last described it. */
  get lease(): Lease {
    return this.#lease;
  }

  /** Whether the handle still renews (or re-issues) its lease. */
  get renewing(): boolean {
    return this.#renewing && this.#released === undefined;
  }

  /** Extends the lease now. A refusal is thrown as a TaskleaseError. */
  async renew(): Promise<Lease> {
    const { lease, serverNow } = await this.calls.renew(this.#lease.id);
    this.#lease = lease;
    this.#schedule(serverNow);
    return lease;
  }

  /**
   * Revokes the lease, and any older one a re-issue kept, after a renewal or
   * re-issue in flight ends. Safe to call again (and concurrently): the first
   * call's outcome is shared; a failed call can be repeated.
   */
  release(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#released ??= this.#releaseAll().catch((err: unknown) => {
      this.#released = undefined;
      throw err;
    });
    return this.#released;
  }

  async #releaseAll() {
    await this.#ticking;
    const older = [...this.#older.keys()];
    const results = await Promise.allSettled([
      this.calls.release(this.#lease.id).then((lease) => {
        this.#lease = lease;
      }),
      ...older.map((id) => this.#releaseOlder(id)),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Releases a lease a re-issue replaced; it stays remembered (and its timer set) until the broker confirms. */
  async #releaseOlder(id: string) {
    await this.calls.release(id);
    clearTimeout(this.#older.get(id));
    this.#older.delete(id);
  }

  /** `onChange`, whose throw is the holder's bug: reported, and it skips none of the handle's own work. */
  #changed() {
    try {
      this.options.onChange?.(this);
    } catch (err) {
      this.options.onError?.(err, this);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  #schedule(serverNow: number) {
    clearTimeout(this.#timer);
    if (!this.renewing) return;
    const remaining = Date.parse(this.#lease.expires_at) - serverNow;
    if (!(remaining > 0)) return;
    const delay = Math.max(MIN_DELAY_MS, remaining * (1 - (this.options.renewAtRemaining ?? 1 / 3)));
    this.#timer = setTimeout(() => {
      this.#ticking = this.#tick().finally(() => (this.#ticking = undefined));
    }, delay);
    this.#timer.unref();
  }

  async #tick() {
    this.#timer = undefined;
    if (!this.renewing) return;
    try {
      await this.renew();
    } catch (err) {
      if (this.#released !== undefined) return;
      this.renewalError = err;
      if (err instanceof TaskleaseError && STOPS_RENEWAL.has(err.code)) {
        if (this.options.reissue) return this.#reissue();
        this.#renewing = false;
      } else if (err instanceof TaskleaseError && err.status >= 400 && err.status < 500) {
        // The lease or its task ended (lease_not_active, task_not_open, ...): nothing left to renew.
        this.#renewing = false;
      } else {
        // The broker is unavailable: try again while the lease lasts.
        this.#schedule(Date.now());
      }
      this.options.onError?.(err, this);
      return;
    }
    if (this.#released === undefined) this.#changed();
  }

  async #reissue() {
    const old = this.#lease;
    let issued: Awaited<ReturnType<LeaseCalls['issue']>>;
    try {
      issued = await this.calls.issue(this.task, this.role, this.options.ttlSeconds);
    } catch (err) {
      this.renewalError = err;
      if (err instanceof TaskleaseError && err.status >= 400 && err.status < 500) this.#renewing = false;
      else this.#schedule(Date.now());
      this.options.onError?.(err, this);
      return;
    }
    // The old credential may still be in use until its own expiry: keep its lease until then.
    const timer = setTimeout(
      () => void this.#releaseOlder(old.id).catch((err: unknown) => this.options.onError?.(err, this)),
      Math.max(0, Date.parse(old.expires_at) - issued.serverNow),
    );
    timer.unref();
    this.#older.set(old.id, timer);
    this.#lease = issued.lease;
    this.#credentials = issued.credentials;
    // A release() called meanwhile waits for this re-issue and then releases both.
    if (this.#released !== undefined) return;
    this.#schedule(issued.serverNow);
    this.#changed();
  }
}
