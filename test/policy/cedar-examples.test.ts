// The example policies of docs/policy.md (examples/policies/), decided by `tasklease policy test` as an operator's
// CI would run it, in process; and the command's failures: a mismatch exits 1, a policy that does not validate 2.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runProgram } from '../../src/cli/program.js';

const dir = new URL('../../examples/policies/', import.meta.url).pathname;

async function cli(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runProgram(argv, { version: '0.0.0', env: {}, io: { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) } });
  return { code, stdout, stderr };
}

describe('the example policies', () => {
  it('are all named by the example config', () => {
    const config = parse(readFileSync(join(dir, 'tasklease.yaml'), 'utf8')) as { policy: { cedar: { files: string[] } } };
    expect(readdirSync(dir).filter((f) => f.endsWith('.cedar')).sort()).toEqual([...config.policy.cedar.files].sort());
  });

  it('decide their cases as expected (tasklease policy test)', async () => {
    const run = await cli('policy', 'test', join(dir, 'cases.yaml'), '--config', join(dir, 'tasklease.yaml'));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^10 of 10 cases as expected; policy set [0-9a-f]{16}$/m);
    expect(run.stdout).toContain('ok   no write on Friday after 16:00 UTC: deny (role_denied: forbidden by policy no-friday-writes)');
    // A policy annotated @conflict refuses as a conflict of what is held.
    expect(run.stdout).toMatch(/ok {3}no egress role for an agent that holds customer data in another task: deny \(role_conflict: .*customer-data-egress/);
  });

  it('a decision other than the one expected exits 1 and says which', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'policy-test-'));
    const cases = join(tmp, 'cases.yaml');
    writeFileSync(cases, 'cases:\n  - name: wrong\n    identity: { issuer: github, subject: s, claims: { repository_owner: example-org } }\n    role: write-db\n    at: 2026-12-04T16:30:00Z\n    expect: allow\n');
    const run = await cli('policy', 'test', cases, '--config', join(dir, 'tasklease.yaml'));
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('FAIL wrong: deny (role_denied: forbidden by policy no-friday-writes); expected allow');
    writeFileSync(cases, 'cases: []\n');
    expect((await cli('policy', 'test', cases, '--config', join(dir, 'tasklease.yaml'))).code).toBe(2);
  });

  it('a policy that does not validate stops the command, naming its file, line and reason (tasklease policy validate)', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'policy-validate-'));
    writeFileSync(join(tmp, 'ops.cedar'), '// ops\n@id("typo")\nforbid (principal, action == Tasklease::Action::"RequestCredential", resource)\nwhen { principal.subjekt == "x" };\n');
    writeFileSync(join(tmp, 'tasklease.yaml'), readFileSync(join(dir, 'tasklease.yaml'), 'utf8').replace(/files:[\s\S]*$/, 'files: [ops.cedar]\n'));
    const bad = await cli('policy', 'validate', '--config', join(tmp, 'tasklease.yaml'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/invalid policies[\s\S]*ops\.cedar:4: for policy `typo`, attribute `subjekt` on entity type `Tasklease::Agent` not found/);
    // serve refuses to start on them, before it opens anything.
    const serve = await cli('serve', '--config', join(tmp, 'tasklease.yaml'));
    expect(serve.code).toBe(2);
    expect(serve.stderr).toMatch(/invalid policies[\s\S]*ops\.cedar:4:/);
    const good = await cli('policy', 'validate', '--config', join(dir, 'tasklease.yaml'));
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/^13 policies valid; policy set [0-9a-f]{16}\n/);
  });
});
