import { ApprovalPendingError, TaskleaseError, unwrap, type Client, type LeaseHandle, type LeaseHandleOptions } from '../../client/index.js';

export interface AcquireOptions extends LeaseHandleOptions {
  /** Wait for a gated role's approval instead of refusing. */
  waitApproval: boolean;
  /** How often to ask whether an approval was decided. */
  pollMs: number;
  /** The broker's URL, to say where to approve. */
  url: string;
  /** One line for the user (never a secret). */
  say(line: string): void;
  /** Ends the wait for an approval (SIGINT or SIGTERM to the wrapper). */
  signal: AbortSignal;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A lease handle for `role`, through the SDK: it renews, and re-issues within the
 * task's deadline once it cannot renew. A gated role throws ApprovalPendingError,
 * unless waitApproval: then the approval is polled until decided and redeemed.
 */
export async function acquire(client: Client, task: string, role: string, options: AcquireOptions): Promise<LeaseHandle> {
  const { waitApproval, pollMs, url, say, signal, ...handleOptions } = options;
  try {
    return await client.credentials(task, role, handleOptions);
  } catch (err) {
    if (!(err instanceof ApprovalPendingError) || !waitApproval) throw err;
    const id = err.approval.id;
    say(`role ${role} needs approval ${id}; waiting (approve it with \`tasklease approvals approve ${id} --reason REASON\` or POST ${url.replace(/\/+$/, '')}/v1/approvals/${id}/approve)`);
    for (;;) {
      signal.throwIfAborted();
      const { approval } = unwrap(await client.api.GET('/v1/approvals/{id}', { params: { path: { id } } }));
      if (approval.status === 'approved') return client.credentials(task, role, { ...handleOptions, approval: id });
      if (approval.status !== 'pending') throw new TaskleaseError(`approval_${approval.status}`, 0, `approval ${id} for role ${role} is ${approval.status}${approval.decision_reason ? `: ${approval.decision_reason}` : ''}`);
      await sleep(pollMs);
    }
  }
}
