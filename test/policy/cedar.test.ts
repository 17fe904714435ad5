import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RoleSchema } from '../../src/config/schema.js';
import type { Task } from '../../src/db/schema.js';
import type { Identity } from '../../src/identity/types.js';
import { compileYaml, type PolicySource } from '../../src/policy/cedar/compile.js';
import { loadCedar, PolicyLoadError } from '../../src/policy/cedar/engine.js';
import { readPolicyFiles } from '../../src/policy/cedar/files.js';
import { createPolicy } from '../../src/policy/decide.js';

const role = RoleSchema.parse({ name: 'reports', backend: 'jwt', allow: [{ issuer: 'dev', subject_pattern: 'agent-.*' }], labels: { access: 'write' } });
const identity: Identity = { issuer: 'dev', subject: 'agent-1', claims: { repo: 'org/web' }, tokenSha256: 'h', expiresAt: new Date() };
const task = (labels: Record<string, string> = {}) =>
  ({ id: 't', agentSubject: 'agent-1', agentIssuer: null, roles: ['reports'], labels, status: 'open', createdBy: 'o', createdAt: new Date('2026-12-04T10:00:00Z'), deadline: new Date('2026-12-05T10:00:00Z') }) as unknown as Task;
const friday = new Date('2026-12-04T16:30:00Z');
const src = (id: string, text: string): PolicySource => ({ id, text, origin: id });
const decide = (extra: PolicySource[], labels: Record<string, string> = {}, now = friday) =>
  createPolicy([role], undefined, { requireRegistration: false, cedar: extra }).decide({ identity, task: task(labels), roleName: 'reports', requestedTtl: undefined, now });

describe('Cedar decides every credential request', () => {
  it('allows by the YAML rule compiled to a permit, naming it', () => {
    expect(decide([])).toMatchObject({ allow: true, policies: ['role:reports:allow:0'] });
  });

  it('a forbid beats every permit, and the refusal names it', () => {
    const fridays = src('no-friday-writes', 'forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { resource.hasTag("access") && resource.getTag("access") == "write" && context.weekday == "Fri" && context.hour >= 16 };');
    expect(decide([fridays])).toMatchObject({ allow: false, code: 'role_denied', policies: ['no-friday-writes'], reason: 'forbidden by policy no-friday-writes' });
    expect(decide([fridays], {}, new Date('2026-12-04T15:59:00Z'))).toMatchObject({ allow: true });
  });

  it('denies when no permit matches, and says so', () => {
    const policy = createPolicy([RoleSchema.parse({ ...role, allow: [{ issuer: 'dev', subject: 'someone-else' }] })], undefined, { requireRegistration: false });
    expect(policy.decide({ identity, task: task(), roleName: 'reports', requestedTtl: undefined, now: friday })).toMatchObject({ allow: false, code: 'role_denied', policies: [], reason: 'no policy permits it' });
  });

  it('a forbid annotated @approval gates instead of refusing; a plain forbid still refuses', () => {
    const gate = src('prod-writes', '@approval("production") forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { context.task.hasTag("environment") && context.task.getTag("environment") == "production" };');
    expect(decide([gate], { environment: 'production' })).toMatchObject({ allow: true, approvalRequiredBy: 'production' });
    expect(decide([gate], { environment: 'staging' })).toMatchObject({ allow: true });
    expect(decide([gate], { environment: 'staging' })).not.toHaveProperty('approvalRequiredBy');
    const never = src('never', 'forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { principal.subject == "agent-1" };');
    expect(decide([gate, never], { environment: 'production' })).toMatchObject({ allow: false, policies: expect.arrayContaining(['never']) });
  });

  it('a permit annotated @approval grants only through an approver', () => {
    const policy = createPolicy([RoleSchema.parse({ ...role, allow: [{ issuer: 'dev', subject: 'nobody' }] })], undefined, {
      requireRegistration: false,
      cedar: [src('via-approval', '@approval("break-glass") permit (principal, action == Tasklease::Action::"RequestCredential", resource) when { principal.hasTag("repo") && principal.getTag("repo") == "org/web" };')],
    });
    expect(policy.decide({ identity, task: task(), roleName: 'reports', requestedTtl: undefined, now: friday })).toMatchObject({ allow: true, approvalRequiredBy: 'break-glass' });
  });

  it('fails closed when a forbid cannot be evaluated (Cedar would skip it)', () => {
    // Valid against the schema, an error at run time: the product overflows.
    const overflow = src('overflow', 'forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { context.ttl_seconds * 9223372036854775807 > 0 };');
    expect(decide([overflow])).toMatchObject({ allow: false, code: 'policy_error', policies: ['overflow'] });
    const permitOverflow = src('permit-overflow', 'permit (principal, action == Tasklease::Action::"RequestCredential", resource) when { context.ttl_seconds * 9223372036854775807 > 0 };');
    expect(decide([permitOverflow])).toMatchObject({ allow: true, policies: ['role:reports:allow:0'] });
  });

  it('refuses a set that does not validate, naming the file, the line and the reason', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cedar-'));
    writeFileSync(join(dir, 'ops.cedar'), '// ops\n@id("fine")\nforbid (principal, action == Tasklease::Action::"RequestCredential", resource)\nwhen { context.hour > 30 };\n\npermit (principal, action == Tasklease::Action::"RequestCredential", resource)\nwhen { principal.subjekt == "x" };\n');
    const files = readPolicyFiles(['ops.cedar'], dir);
    expect(files.map((f) => f.id)).toEqual(['fine', 'ops.cedar:6']);
    const err = (() => {
      try {
        loadCedar(files);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).problems).toEqual([expect.stringMatching(/^ops\.cedar:7: .*subjekt.*did you mean `subject`/)]);
    writeFileSync(join(dir, 'syntax.cedar'), 'permit (principal, action == Tasklease::Action::"RequestCredential", resource)\nwhen { ;\n');
    expect(() => readPolicyFiles(['syntax.cedar'], dir)).toThrow(/syntax\.cedar:2/);
    expect(() => readPolicyFiles(['missing.cedar'], dir)).toThrow(/missing\.cedar: cannot be read \(ENOENT\)/);
    expect(() => loadCedar([src('a', 'permit (principal, action == Tasklease::Action::"RequestCredential", resource);'), src('a', 'permit (principal, action == Tasklease::Action::"RequestCredential", resource);')])).toThrow(/policy id a is also used/);
  });

  it('gives one set one hash, whichever replica loads it', () => {
    const a = loadCedar(compileYaml([role], undefined));
    const b = loadCedar(compileYaml([role], undefined));
    expect(a.hash).toBe(b.hash);
    expect(loadCedar([...compileYaml([role], undefined), src('x', 'forbid (principal, action == Tasklease::Action::"RequestCredential", resource) when { context.hour == 99 };')]).hash).not.toBe(a.hash);
  });
});
