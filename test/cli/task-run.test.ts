// `tasklease task run` as a real child process against a broker on a loopback port: the task is
// completed by the command's exit status (which the wrapper propagates), on SIGTERM to the
// wrapper (forwarded to the command), and before the task's deadline (the command is stopped).
import { spawn } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { BIN, childEnv, ROOT, within } from '../support/child-broker.js';
import { DRIVERS } from '../support/db.js';
import { useServedBroker } from '../client/support.js';

const RUN_TIMEOUT_MS = 60_000;

describe.each(DRIVERS)('tasklease task run on %s', (driver) => {
  const served = useServedBroker(driver);

  /** `tasklease task run ... -- node -e <script>`, with its output and its end as they come. */
  async function taskRun(script: string, extra: string[] = [], as = 'orchestrator') {
    const env = childEnv({ TASKLEASE_URL: served.url, TASKLEASE_TOKEN: await served.t.tokenFor(as) });
    const args = ['task', 'run', '--agent', 'agent-1', '--role', 'demo', ...extra, '--', process.execPath, '-e', script];
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const ended = () => within(exited, RUN_TIMEOUT_MS, `tasklease ${args.join(' ')}\nstderr: ${out.stderr}`);
    return { child, out, ended };
  }

  const taskOf = async (id: string) => (await served.t.call('GET', `/v1/tasks/${id}`, { subject: 'orchestrator' })).json.task as { status: string; outcome: string | null };
  const idFrom = (stderr: string) => /tasklease: task (\S+) open until/.exec(stderr)![1]!;

  it('exports TASKLEASE_TASK and TASKLEASE_URL, and completes the task succeeded on exit 0', async () => {
    // The orchestrator's own identity is not the command's: an agent holding it could open, complete or approve.
    const run = await taskRun('console.log(process.env.TASKLEASE_TASK + " " + process.env.TASKLEASE_URL + " " + (process.env.TASKLEASE_TOKEN ?? "no-token"))');
    expect(await run.ended(), run.out.stderr).toBe(0);
    const id = idFrom(run.out.stderr);
    expect(run.out.stdout).toBe(`${id} ${served.url} no-token\n`);
    expect(await taskOf(id)).toMatchObject({ status: 'completed', outcome: 'succeeded' });
  });

  it('completes the task failed on exit 3, and exits 3', async () => {
    const run = await taskRun('process.exit(3)');
    expect(await run.ended(), run.out.stderr).toBe(3);
    expect(await taskOf(idFrom(run.out.stderr))).toMatchObject({ status: 'completed', outcome: 'failed' });
  });

  it('forwards SIGTERM to the command, then completes the task failed', async () => {
    // The command says it is ready only once its SIGTERM handler is set, then exits 143 on SIGTERM.
    const run = await taskRun('process.on("SIGTERM", () => { console.log("terminated"); process.exit(143); }); console.log("ready"); setInterval(() => {}, 1000)');
    await vi.waitFor(() => expect(run.out.stdout).toContain('ready'), { timeout: RUN_TIMEOUT_MS, interval: 50 });
    const id = idFrom(run.out.stderr);
    expect(await taskOf(id)).toMatchObject({ status: 'open' });
    run.child.kill('SIGTERM');
    expect(await run.ended(), run.out.stderr).toBe(143);
    expect(run.out.stdout).toContain('terminated');
    expect(await taskOf(id)).toMatchObject({ status: 'completed', outcome: 'failed' });
  });

  it('completes the task before its deadline and stops the command with SIGTERM', async () => {
    const run = await taskRun('console.log("ready"); setInterval(() => {}, 1000)', ['--ttl', '3']);
    // Killed by SIGTERM: 128 + 15.
    expect(await run.ended(), run.out.stderr).toBe(143);
    expect(run.out.stderr).toContain('reaches its deadline');
    expect(await taskOf(idFrom(run.out.stderr))).toMatchObject({ status: 'completed', outcome: 'failed' });
  });

  it('prints the broker refusing to open the task in one line, and runs nothing', async () => {
    const run = await taskRun('console.log("ran")', [], 'agent-1');
    const code = await run.ended();
    // An agent may not open tasks.
    expect(code).toBe(1);
    expect(run.out.stdout).toBe('');
    expect(run.out.stderr).toMatch(/^tasklease: [a-z_]+: [^\n]+\n$/);
  });
});
