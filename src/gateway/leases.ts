import { createHash } from 'node:crypto';
import { createClient, type Client } from '../client/client.js';
import { TaskleaseError } from '../client/errors.js';
import type { LeaseHandle } from '../client/lease.js';

/** Who the gateway asks for: an agent's identity token (shared mode: the caller's; sidecar: its own). */
export interface Asker {
  /** A stable key for the identity: the token's hash in shared mode, `self` in sidecar mode. */
  key: string;
  client: Client;
}

const MAX_CLIENTS = 1000;

/**
 * The task credentials a gateway holds for its callers: one lease handle per
 * (identity, task, role), renewed (or re-issued) before it expires by the SDK,
 * and one watcher per (identity, task) waiting on the broker for the task to
 * close (GET /v1/tasks/{id}/closure, woken by the database's announcement).
 * When it closes, the task's credentials are dropped and released at once,
 * and every later call for it is refused `task_not_open` without asking the
 * broker. Invariant: a credential is used only while its task is not known
 * to be closed. Proved by test/gateway/gateway.test.ts.
 */
export function createGatewayLeases(deps: { url: string; log: (line: Record<string, unknown>, msg: string) => void; fetch?: (input: Request) => Promise<Response> }) {
  const clients = new Map<string, Client>();
  const handles = new Map<string, Promise<LeaseHandle>>();
  const closed = new Set<string>();
  const watching = new Map<string, AbortController>();
  let stopped = false;

  const taskKey = (asker: Asker, task: string) => `${asker.key}\u0000${task}`;

  /**
   * A client for a caller's own token (shared mode), kept while it is used. It
   * is keyed by the token's hash, never by the claims it carries: a cached
   * credential is attached only to a call bringing the very token the broker
   * verified when it issued it (a claim read without verifying would let any
   * caller name another's identity). So a rotated token takes leases of its own.
   */
  function askerFor(token: string): Asker {
    const key = createHash('sha256').update(token).digest('hex');
    let client = clients.get(key);
    if (!client) {
      if (clients.size >= MAX_CLIENTS) clients.delete(clients.keys().next().value!);
      client = createClient({ url: deps.url, token, ...(deps.fetch ? { fetch: deps.fetch } : {}) });
      clients.set(key, client);
    }
    return { key, client };
  }

  async function dropTask(key: string): Promise<void> {
    closed.add(key);
    watching.get(key)?.abort();
    watching.delete(key);
    const prefix = `${key}\u0000`;
    const ending = [...handles.entries()].filter(([k]) => k.startsWith(prefix));
    for (const [k] of ending) handles.delete(k);
    // The broker revokes them with the task; releasing says the gateway is done with them.
    await Promise.all(ending.map(async ([, h]) => (await h.catch(() => undefined))?.release().catch(() => {})));
  }

  /** Waits on the broker for the task to close; a network failure is retried a second later. */
  function watch(asker: Asker, task: string): void {
    const key = taskKey(asker, task);
    if (watching.has(key) || closed.has(key) || stopped) return;
    const abort = new AbortController();
    watching.set(key, abort);
    void (async () => {
      while (!abort.signal.aborted) {
        try {
          const res = await asker.client.api.GET('/v1/tasks/{id}/closure', { params: { path: { id: task }, query: { wait: 15 } }, signal: abort.signal });
          const status = res.data?.task.status;
          if (res.response.status === 404 || (status !== undefined && status !== 'open')) {
            deps.log({ task, status: status ?? 'not_found' }, 'task closed: its credentials are dropped');
            await dropTask(key);
            return;
          }
          if (!res.data) await new Promise((r) => setTimeout(r, 1000));
        } catch {
          if (!abort.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
        }
      }
    })();
  }

  return {
    askerFor,
    /** The sidecar's own identity. */
    self(client: Client): Asker {
      return { key: 'self', client };
    },
    /** Whether the task is known to be closed for this identity (then no credential is used). */
    isClosed: (asker: Asker, task: string) => closed.has(taskKey(asker, task)),
    /** The current credentials of (task, role), taking a lease the first time; a refusal is the broker's TaskleaseError. */
    async credentials(asker: Asker, task: string, role: string): Promise<Record<string, unknown>> {
      const key = `${taskKey(asker, task)}\u0000${role}`;
      let handle = handles.get(key);
      if (!handle) {
        handle = asker.client.credentials(task, role, { reissue: true });
        handles.set(key, handle);
        // A refusal is not kept: the next call asks again.
        handle.catch(() => handles.get(key) === handle && handles.delete(key));
        watch(asker, task);
      }
      const current = await handle;
      if (closed.has(taskKey(asker, task))) throw new TaskleaseError('task_not_open', 403, 'the task is no longer open', null);
      return current.credentials;
    },
    /** Releases every lease held and stops watching. */
    async stop(): Promise<void> {
      stopped = true;
      for (const abort of watching.values()) abort.abort();
      watching.clear();
      const all = [...handles.values()];
      handles.clear();
      await Promise.all(all.map(async (h) => (await h.catch(() => undefined))?.release().catch(() => {})));
    },
  };
}
export type GatewayLeases = ReturnType<typeof createGatewayLeases>;
