// The admin, approver and orchestrator commands against a real broker on a loopback port:
// tables and --json, a refusal as one line with its code (exit 1), bulk revocation's
// confirmation. Commands run in process through runProgram, except the bulk revocation's
// TTY check, which needs a real child process (its stdin is not a terminal).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { runProgram } from '../../src/cli/program.js';
import { ADMIN_STATIC_TOKEN, freshId, HARNESS_ROLES } from '../support/broker.js';
import { BIN, childEnv, killAllChildren, ROOT, runCli, within } from '../support/child-broker.js';
import { DRIVERS } from '../support/db.js';
import { useServedBroker } from '../client/support.js';

const config = {
  roles: [
    ...HARNESS_ROLES,
    {
      name: 'gated',
      backend: 'local',
      allow: [{ issuer: 'test', subject_pattern: 'agent-.*' }],
      requires_approval: true,
      approvers: [{ issuer: 'test', subject: 'approver-1' }],
    },
  ],
};

afterAll(() => killAllChildren());

describe.each(DRIVERS)('the admin CLI on %s', (driver) => {
  const served = useServedBroker(driver, { config });

  /** `tasklease <argv>` in this process, as `subject` (a test-issuer token in TASKLEASE_TOKEN) or the static admin token. */
  async function cli(argv: string[], as = 'admin') {
    let stdout = '';
    let stderr = '';
    const token = as === 'ops' ? ADMIN_STATIC_TOKEN : await served.t.tokenFor(as);
    const env = { TASKLEASE_URL: served.url, TASKLEASE_TOKEN: token };
    const code = await runProgram(argv, { version: '0.0.0', env, io: { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) } });
    return { code, stdout, stderr, shown: `code ${code}\nstdout: ${stdout}\nstderr: ${stderr}` };
  }

  async function openTask(roles = ['demo', 'gated']) {
    const res = await served.t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles, ttl_seconds: 3600 });
    expect(res.status).toBe(201);
    return res.json.task.id as string;
  }
  async function issue(task: string, role = 'demo') {
    const res = await served.t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role });
    expect(res.status).toBe(201);
    return res.json.lease.id as string;
  }
  const statusOf = async (id: string) => (await served.t.call('GET', `/v1/leases/${id}`, { subject: 'admin' })).json.lease.status as string;

  it('leases list, show and revoke: a table by default, JSON with --json', async () => {
    const task = await openTask();
    const lease = await issue(task);

    const table = await cli(['leases', 'list', '--task', task]);
    expect(table.code, table.shown).toBe(0);
    const [header, row, ...rest] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID +STATUS +ROLE +SUBJECT +TASK +EXPIRES$/);
    expect(row).toMatch(new RegExp(`^${lease} +active +demo +test/agent-1 +${task} `));
    expect(rest).toEqual([]);

    const json = await cli(['leases', 'list', '--task', task, '--status', 'active', '--json']);
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ id: lease, status: 'active', task, revoke_attempts: 0 })]);

    const shown = await cli(['leases', 'show', lease]);
    expect(shown.code, shown.shown).toBe(0);
    expect(shown.stdout).toMatch(/^status: +active$/m);
    expect(shown.stdout).toMatch(/^revoke attempts: +0$/m);

    const revoked = await cli(['leases', 'revoke', lease, '--reason', 'suspected leak'], 'ops');
    expect(revoked.code, revoked.shown).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^lease ${lease}: (revoking|revoked)\\n$`));
    expect(await statusOf(lease)).not.toBe('active');
    // Idempotent: revoking again answers the same lease.
    expect((await cli(['leases', 'revoke', lease, '--reason', 'again', '--json'])).code).toBe(0);
  });

  it('prints a refusal as one line with its code and exits 1; a usage error exits 2', async () => {
    const missing = await cli(['leases', 'show', randomUUID()]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/^tasklease: lease_not_found: [^\n]+\n$/);

    // An agent is not an admin.
    const forbidden = await cli(['leases', 'list'], 'agent-1');
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(forbidden.stderr).toMatch(/^tasklease: not_admin: /);

    const noUrl = await runProgram(['leases', 'list'], { version: '0', env: {}, io: { stdout: () => {}, stderr: () => {} } });
    expect(noUrl).toBe(2);
    expect((await cli(['leases', 'revoke', randomUUID()])).code).toBe(2); // --reason is required
  });

  it('approvals list and approve: the approver sees the request and decides it', async () => {
    const task = await openTask();
    const requested = await served.t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task, role: 'gated' });
    expect(requested.status).toBe(202);
    const id = requested.json.approval.id as string;

    const list = await cli(['approvals', 'list'], 'approver-1');
    expect(list.code, list.shown).toBe(0);
    expect(list.stdout).toMatch(/^ID +STATUS +ROLE +REQUESTER +TASK +REQUIRED BY +EXPIRES$/m);
    expect(list.stdout).toMatch(new RegExp(`^${id} +pending +gated +test/agent-1 +${task} +role:gated `, 'm'));

    const approved = await cli(['approvals', 'approve', id, '--reason', 'ticket OPS-1', '--json'], 'approver-1');
    expect(approved.code, approved.shown).toBe(0);
    expect(JSON.parse(approved.stdout).approval).toMatchObject({ id, status: 'approved', decision_reason: 'ticket OPS-1' });

    const shown = await cli(['approvals', 'show', id], 'approver-1');
    expect(shown.stdout).toMatch(/^status: +approved$/m);
    // Decided once: a second decision is refused with its code.
    const again = await cli(['approvals', 'deny', id, '--reason', 'too late'], 'approver-1');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^tasklease: [a-z_]+: [^\n]+\n$/);
  });

  it('policy explain prints the decision without issuing', async () => {
    const task = await openTask(['demo']);
    const allowed = await cli(['policy', 'explain', '--subject', 'agent-1', '--issuer', 'test', '--task', task, '--role', 'demo', '--json']);
    expect(allowed.code, allowed.shown).toBe(0);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ decision: 'allow' });
    const denied = await cli(['policy', 'explain', '--subject', 'agent-1', '--issuer', 'test', '--task', task, '--role', 'special']);
    expect(denied.code, denied.shown).toBe(0);
    expect(denied.stdout).toMatch(/^decision: +deny$/m);
    expect(denied.stdout).toMatch(/^code: +\w+$/m);
  });

  it('task open, show, list and complete, one step at a time', async () => {
    const externalId = freshId();
    const opened = await cli(['task', 'open', '--agent', 'agent-1', '--role', 'demo', '--ttl', '10m', '--label', 'env=test', '--external-id', externalId], 'orchestrator');
    expect(opened.code, opened.shown).toBe(0);
    const id = opened.stdout.trim();
    expect(opened.stdout).toBe(`${id}\n`);
    const lease = await issue(id);

    const shown = await cli(['task', 'show', id, '--json'], 'orchestrator');
    const body = JSON.parse(shown.stdout);
    expect(body.task).toMatchObject({ id, status: 'open', labels: { env: 'test' }, external_id: externalId });
    expect(Date.parse(body.task.deadline) - Date.parse(body.task.created_at)).toBe(600_000);
    expect(body.leases.map((l: { id: string }) => l.id)).toEqual([lease]);

    const listed = await cli(['tasks', 'list', '--external-id', externalId], 'orchestrator');
    expect(listed.stdout).toMatch(new RegExp(`^${id} +open `, 'm'));

    const completed = await cli(['tasks', 'complete', id, '--outcome', 'failed'], 'orchestrator');
    expect(completed.code, completed.shown).toBe(0);
    expect(completed.stdout).toBe(`task ${id} completed (failed): revoking 1 lease\n`);
    expect(await statusOf(lease)).not.toBe('active');
  });

  it('audit tail prints the newest events, one JSON object a line with --json', async () => {
    await openTask();
    const tail = await cli(['audit', 'tail', '--limit', '3', '--json']);
    expect(tail.code, tail.shown).toBe(0);
    const events = tail.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { seq: number; action: string });
    expect(events).toHaveLength(3);
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));
    expect(events.at(-1)!.action).toBe('task.opened');
  });

  it('audit tail --follow prints new events as they come, and exits 0 on SIGTERM', async () => {
    await openTask();
    const env = childEnv({ TASKLEASE_URL: served.url, TASKLEASE_TOKEN: await served.t.tokenFor('admin') });
    const child = spawn(process.execPath, [BIN, 'audit', 'tail', '--follow', '--interval', '1', '--limit', '1', '--json'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await vi.waitFor(() => expect(stdout.split('\n').filter(Boolean), stderr).toHaveLength(1), { timeout: 60_000, interval: 50 });
    const task = await openTask();
    await vi.waitFor(() => expect(stdout, stderr).toContain(`"target":"task:${task}"`), { timeout: 60_000, interval: 50 });
    const seqs = stdout.trimEnd().split('\n').map((line) => (JSON.parse(line) as { seq: number }).seq);
    expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b));
    child.kill('SIGTERM');
    expect(await within(exited, 30_000, 'audit tail --follow after SIGTERM')).toBe(0);
  }, 120_000);

  it('bulk revoke refuses without --yes off a terminal, and revokes every match with it', async () => {
    const task = await openTask();
    const leases = [await issue(task), await issue(task)];
    const env = childEnv({ TASKLEASE_URL: served.url, TASKLEASE_TOKEN: await served.t.tokenFor('admin') });

    const refused = await runCli(['revoke', '--task', task, '--reason', 'incident 7'], env, 60_000);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/^tasklease: [^\n]*--yes[^\n]*\n$/);
    for (const id of leases) expect(await statusOf(id)).toBe('active');

    const done = await runCli(['revoke', '--task', task, '--reason', 'incident 7', '--yes'], env, 60_000);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toBe('revoking 2 leases\n');
    for (const id of leases) expect(await statusOf(id)).not.toBe('active');
  });
  it('bulk revoke on a terminal says how many leases match and revokes only once confirmed', async () => {
    const task = await openTask();
    const leases = [await issue(task), await issue(task), await issue(task)];
    const env = childEnv({ TASKLEASE_URL: served.url, TASKLEASE_TOKEN: await served.t.tokenFor('admin') });
    // util-linux script(1) gives the command a pseudo-terminal; what the test writes to it is typed there.
    const command = [process.execPath, BIN, 'revoke', '--task', task, '--reason', 'incident 8'].map((a) => `'${a}'`).join(' ');
    const onTerminal = async (answer: string) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await vi.waitFor(() => expect(output).toContain('? [y/N]'), { timeout: 60_000, interval: 50 });
      child.stdin.end(`${answer}\n`);
      return { code: await within(exited, 30_000, 'revoke on a terminal'), output };
    };

    const declined = await onTerminal('n');
    expect(declined.output).toContain('revoke 3 active leases? [y/N]');
    expect(declined.code).toBe(1);
    for (const id of leases) expect(await statusOf(id)).toBe('active');

    const confirmed = await onTerminal('y');
    expect(confirmed.code, confirmed.output).toBe(0);
    expect(confirmed.output).toContain('revoking 3 leases');
    for (const id of leases) expect(await statusOf(id)).not.toBe('active');
  }, 180_000);
});
