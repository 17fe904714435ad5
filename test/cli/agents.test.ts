// `tasklease agents ...` against a real broker on a loopback port, with agents registered in its
// config (as test/agents/registry.test.ts does): the review as a table and as JSON, suspension by
// agent and by identity rule as its requests then meet it, and refusals as one line with their code.
import { afterAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/cli/program.js';
import { HARNESS_ROLES } from '../support/broker.js';
import { killAllChildren } from '../support/child-broker.js';
import { DRIVERS } from '../support/db.js';
import { useServedBroker } from '../client/support.js';

const owner = (name: string, principal?: string) => ({ name, contact: `${name}@example.com`, principals: principal ? [{ issuer: 'test', subject: principal }] : [] });

/** Registration required; agent-1 alone (its ceiling demo, owned by owner-a), and a fleet by pattern whose ceiling is wider. */
const AGENT_CONFIG = {
  require_registration: true,
  register: [
    { name: 'agent-1', match: { issuer: 'test', subject: 'agent-1' }, owner: owner('team-a', 'owner-a'), purpose: 'reports', roles: ['demo'] },
    { name: 'fleet', match: { issuer: 'test', subject_pattern: 'agent-fleet-.*' }, owner: owner('team-f'), purpose: 'batch work', roles: ['demo', 'flaky'] },
  ],
};

afterAll(() => killAllChildren());

describe.each(DRIVERS)('tasklease agents, on %s', (driver) => {
  const served = useServedBroker(driver, { config: { agents: AGENT_CONFIG, roles: HARNESS_ROLES } });

  /** `tasklease <argv>` in this process, as `subject` (a test-issuer token in TASKLEASE_TOKEN). */
  async function cli(argv: string[], as = 'admin') {
    let stdout = '';
    let stderr = '';
    const env = { TASKLEASE_URL: served.url, TASKLEASE_TOKEN: await served.t.tokenFor(as) };
    const code = await runProgram(argv, { version: '0.0.0', env, io: { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) } });
    return { code, stdout, stderr, shown: `code ${code}\nstdout: ${stdout}\nstderr: ${stderr}` };
  }

  async function open(subject: string) {
    const res = await served.t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject }, roles: ['demo'], ttl_seconds: 3600 });
    expect(res.status, res.text).toBe(201);
    return res.json.task.id as string;
  }
  const ask = (subject: string, task: string) => served.t.call('POST', '/v1/credentials', { subject }, { task, role: 'demo' });
  async function issue(subject: string, task: string) {
    const res = await ask(subject, task);
    expect(res.status, res.text).toBe(201);
    return res.json.lease.id as string;
  }
  const statusOf = async (id: string) => (await served.t.call('GET', `/v1/leases/${id}`, { subject: 'admin' })).json.lease.status as string;

  it('agents list: a table of names, owners, ceilings and suspension; JSON with --json', async () => {
    const table = await cli(['agents', 'list']);
    expect(table.code, table.shown).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^NAME +OWNER +CEILING +SUSPENDED$/);
    expect(rows).toEqual([expect.stringMatching(/^agent-1 +team-a +demo +no$/), expect.stringMatching(/^fleet +team-f +demo,flaky +no$/)]);

    const json = await cli(['agents', 'list', '--json']);
    expect(json.code, json.shown).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({ name: 'agent-1', source: 'config', roles: ['demo'], suspension: null }),
      expect.objectContaining({ name: 'fleet', owner: expect.objectContaining({ name: 'team-f', contact: 'team-f@example.com' }) }),
    ]);
  });

  it('revoke --agent: every active lease of one agent, and no other', async () => {
    const mine = await issue('agent-fleet-9', await open('agent-fleet-9'));
    const other = await issue('agent-1', await open('agent-1'));
    const revoked = await cli(['revoke', '--agent', 'fleet', '--reason', 'rotating the fleet', '--yes']);
    expect(revoked.code, revoked.shown).toBe(0);
    expect(revoked.stdout).toMatch(/^revoking [1-9]\d* leases?$/m);
    expect(['revoking', 'revoked']).toContain(await statusOf(mine));
    expect(await statusOf(other)).toBe('active');
  });

  it('agents list --unused-roles: only the agents whose ceiling is wider than their use, with what they held and left unused', async () => {
    await issue('agent-1', await open('agent-1'));
    await issue('agent-fleet-1', await open('agent-fleet-1'));
    const table = await cli(['agents', 'list', '--unused-roles']);
    expect(table.code, table.shown).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^NAME +OWNER +CEILING +SUSPENDED +HELD \(30d\) +UNUSED$/);
    // agent-1 used all of its ceiling: it is not listed.
    expect(rows).toEqual([expect.stringMatching(/^fleet +team-f +demo,flaky +no +demo \(\d+\) +flaky$/)]);
    const json = JSON.parse((await cli(['agents', 'list', '--unused-roles', '--json'])).stdout);
    expect(json).toEqual([expect.objectContaining({ name: 'fleet', unused_roles: ['flaky'], held: [{ role: 'demo', count: expect.any(Number) }] })]);
  });

  it('agents show: the ceiling against what it held, last activity, its newest active leases and its suspensions', async () => {
    const lease = await issue('agent-fleet-2', await open('agent-fleet-2'));
    const shown = await cli(['agents', 'show', 'fleet']);
    expect(shown.code, shown.shown).toBe(0);
    expect(shown.stdout).toMatch(/^owner: +team-f <team-f@example\.com>$/m);
    expect(shown.stdout).toMatch(/^ceiling: +demo,flaky$/m);
    expect(shown.stdout).toMatch(/^held \(30d\): +demo \(\d+\)$/m);
    expect(shown.stdout).toMatch(/^unused roles: +flaky$/m);
    expect(shown.stdout).toMatch(/^last activity: +\d{4}-\d\d-\d\dT/m);
    expect(shown.stdout).toMatch(/^active leases: +[1-9]\d*$/m);
    expect(shown.stdout).toMatch(/^suspended: +no$/m);
    expect(shown.stdout).toMatch(new RegExp(`^${lease} +demo +test/agent-fleet-2 `, 'm'));
    expect(shown.stdout).toMatch(/^suspensions, newest first:\n\(none\)$/m);

    const json = JSON.parse((await cli(['agents', 'show', 'fleet', '--json'])).stdout);
    expect(json.agent).toMatchObject({ name: 'fleet', roles: ['demo', 'flaky'], unused_roles: ['flaky'], suspension: null, suspensions: [] });
    expect(json.agent.active_leases.items.map((l: { id: string }) => l.id)).toContain(lease);
  });

  it('agents suspend revokes the agent\'s leases and its next request is refused with agent_suspended; agents resume undoes it', async () => {
    const task = await open('agent-1');
    const lease = await issue('agent-1', task);
    const suspended = await cli(['agents', 'suspend', 'agent-1', '--reason', 'token leaked in a log']);
    expect(suspended.code, suspended.shown).toBe(0);
    expect(suspended.stdout).toMatch(/^agent agent-1 suspended: revoking [1-9]\d* leases?\n$/);
    expect(await statusOf(lease)).not.toBe('active');
    const refused = await ask('agent-1', task);
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('agent_suspended');

    const listed = await cli(['agents', 'list']);
    expect(listed.stdout).toMatch(/^agent-1 +team-a +demo +yes$/m);
    const shown = await cli(['agents', 'show', 'agent-1']);
    expect(shown.stdout).toMatch(/^suspended: +since \S+ by test\/admin: token leaked in a log$/m);

    const resumed = await cli(['agents', 'resume', 'agent-1', '--reason', 'token rotated', '--json']);
    expect(resumed.code, resumed.shown).toBe(0);
    expect(JSON.parse(resumed.stdout).suspension).toMatchObject({ reason: 'token leaked in a log', resumed_by: 'test/admin', resume_reason: 'token rotated' });
    expect((await ask('agent-1', task)).status).toBe(201);
    const again = await cli(['agents', 'resume', 'agent-1', '--reason', 'twice']);
    expect(again.stdout).toBe('agent agent-1 was not suspended\n');
    const history = await cli(['agents', 'show', 'agent-1']);
    expect(history.stdout).toMatch(/^suspended: +no$/m);
    expect(history.stdout).toMatch(/^\S+ +\S+ +test\/admin +token leaked in a log +\S+ +token rotated$/m);
  });

  it("lets an agent's owner suspend and show it; anyone else gets a refusal as one line", async () => {
    const byOwner = await cli(['agents', 'suspend', 'agent-1', '--reason', 'paused by its owner'], 'owner-a');
    expect(byOwner.code, byOwner.shown).toBe(0);
    expect((await cli(['agents', 'show', 'agent-1'], 'owner-a')).stdout).toMatch(/^suspended: +since \S+ by test\/owner-a: /m);
    expect((await cli(['agents', 'resume', 'agent-1', '--reason', 'back'], 'owner-a')).stdout).toBe('agent agent-1 resumed\n');

    const notOwner = await cli(['agents', 'show', 'fleet'], 'owner-a');
    expect(notOwner.code).toBe(1);
    expect(notOwner.stdout).toBe('');
    expect(notOwner.stderr).toMatch(/^tasklease: not_agent_owner: [^\n]+\n$/);
    const notAdmin = await cli(['agents', 'list'], 'agent-1');
    expect(notAdmin.code).toBe(1);
    expect(notAdmin.stderr).toMatch(/^tasklease: not_admin: [^\n]+\n$/);
    const agentSuspends = await cli(['agents', 'suspend', 'fleet', '--reason', 'x'], 'agent-fleet-3');
    expect(agentSuspends.code).toBe(1);
    expect(agentSuspends.stderr).toMatch(/^tasklease: not_agent_owner: /);
  });

  it('suspends by identity rule until lifted; agents suspensions lists the rules in force', async () => {
    const task = await open('agent-fleet-5');
    const other = await open('agent-fleet-6');
    const held = await issue('agent-fleet-5', task);
    const rule = await cli(['agents', 'suspend', '--issuer', 'test', '--subject', 'agent-fleet-5', '--reason', 'odd traffic']);
    expect(rule.code, rule.shown).toBe(0);
    const [, id] = /^suspension (\S+) of test\/agent-fleet-5 in force: revoking 1 lease\n$/.exec(rule.stdout) ?? [];
    expect(id, rule.stdout).toBeDefined();
    expect(await statusOf(held)).not.toBe('active');
    expect((await ask('agent-fleet-5', task)).json.code).toBe('agent_suspended');
    expect((await ask('agent-fleet-6', other)).status).toBe(201);

    const pattern = await cli(['agents', 'suspend', '--issuer', 'test', '--subject-pattern', 'agent-stray-.*', '--reason', 'not ours', '--json']);
    expect(pattern.code, pattern.shown).toBe(0);
    const patternId = JSON.parse(pattern.stdout).suspension.id as string;
    const listed = await cli(['agents', 'suspensions']);
    expect(listed.stdout).toMatch(new RegExp(`^${id} +test/agent-fleet-5 +\\S+ +test/admin +odd traffic$`, 'm'));
    expect(listed.stdout).toMatch(new RegExp(`^${patternId} +test/agent-stray-\\.\\* \\(pattern\\) `, 'm'));

    const lifted = await cli(['agents', 'lift', id!, '--reason', 'explained']);
    expect(lifted.code, lifted.shown).toBe(0);
    expect(lifted.stdout).toBe(`suspension ${id} of test/agent-fleet-5 lifted\n`);
    expect((await ask('agent-fleet-5', task)).status).toBe(201);
    const again = await cli(['agents', 'lift', id!, '--reason', 'again']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^tasklease: suspension_not_found: [^\n]+\n$/);
    expect((await cli(['agents', 'lift', patternId, '--reason', 'done'])).code).toBe(0);
    expect((await cli(['agents', 'suspensions'])).stdout).toBe('(no suspensions by rule)\n');
  });

  it('names an unknown agent as agent_not_found, and a malformed suspend as a usage error', async () => {
    for (const argv of [['agents', 'show', 'never-was'], ['agents', 'suspend', 'never-was', '--reason', 'x'], ['agents', 'resume', 'never-was', '--reason', 'x']]) {
      const missing = await cli(argv);
      expect(missing.code, missing.shown).toBe(1);
      expect(missing.stdout).toBe('');
      expect(missing.stderr).toMatch(/^tasklease: agent_not_found: [^\n]+\n$/);
    }
    const usage = [
      ['agents', 'suspend', '--reason', 'x'], // neither an agent nor a rule
      ['agents', 'suspend', 'fleet', '--issuer', 'test', '--subject', 'a', '--reason', 'x'], // both
      ['agents', 'suspend', '--issuer', 'test', '--reason', 'x'], // a rule without a subject
      ['agents', 'suspend', '--issuer', 'test', '--subject', 'a', '--subject-pattern', 'b', '--reason', 'x'],
      ['agents', 'suspend', 'fleet'], // --reason is required
    ];
    for (const argv of usage) {
      const refused = await cli(argv);
      expect(refused.code, `${argv.join(' ')}\n${refused.shown}`).toBe(2);
      expect(refused.stderr).toMatch(/^tasklease: [^\n]+\n$/);
    }
    expect((await cli(['agents', 'list'])).stdout).toMatch(/^fleet +team-f +demo,flaky +no$/m);
  });
});
