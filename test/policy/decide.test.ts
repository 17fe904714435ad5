import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Task } from '../../src/db/schema.js';
import type { Identity } from '../../src/identity/types.js';
import { createPolicy, type CredentialRequest } from '../../src/policy/decide.js';

const now = new Date('2030-01-01T00:00:00Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);
const AGENT = 'system:serviceaccount:agents:reporter';

/** Roles built through the real config schema, so defaults (ttl 900, max_ttl 3600) apply. */
const config = parseConfig(
  {
    issuers: [
      { name: 'k8s', issuer: 'https://k8s.example.com' },
      { name: 'github', issuer: 'https://token.actions.githubusercontent.com' },
    ],
    backends: { local: { type: 'jwt' } },
    roles: [
      { name: 'reports-read', backend: 'local', allow: [{ issuer: 'k8s', subject_pattern: 'system:serviceaccount:agents:.*' }] },
      { name: 'short', backend: 'local', ttl: '1m', max_ttl: '5m', allow: [{ issuer: 'k8s', subject: AGENT }] },
      { name: 'deploy', backend: 'local', allow: [{ issuer: 'k8s', subject: 'system:serviceaccount:agents:deployer' }] },
      { name: 'ci-only', backend: 'local', allow: [{ issuer: 'github', subject_pattern: 'repo:acme/.+' }] },
    ],
  },
  'test',
);
const policy = createPolicy(config.roles);

function identity(subject = AGENT, issuer = 'k8s'): Identity {
  return { issuer, subject, claims: { sub: subject }, tokenSha256: 'f'.repeat(64), expiresAt: at(3600) };
}

function task(overrides: Partial<Task> = {}): Task {
  return {
    id: 'task-1',
    externalId: null,
    agentIssuer: 'k8s',
    agentSubject: AGENT,
    roles: ['reports-read', 'short', 'deploy', 'ci-only', 'ghost'],
    status: 'open',
    labels: {},
    maxLeases: null,
    outcome: null,
    createdBy: 'static:ci',
    createdAt: at(-600),
    deadline: at(7200),
    completedAt: null,
    purpose: null,
    owner: null,
    ...overrides,
  };
}

function decide(overrides: Partial<CredentialRequest> = {}) {
  return policy.decide({
    identity: identity(),
    task: task(),
    roleName: 'reports-read',
    requestedTtl: undefined,
    now,
    ...overrides,
  });
}

describe('createPolicy().decide', () => {
  it("allows a bound agent a role in its task and its rules, with the role's default TTL", () => {
    const decision = decide();
    expect(decision).toMatchObject({ allow: true, ttlSeconds: 900 });
    expect(decision.allow && decision.role.name).toBe('reports-read');
  });

  it('honours a requested TTL within bounds and clamps one above the role maximum', () => {
    expect(decide({ requestedTtl: 120 })).toMatchObject({ allow: true, ttlSeconds: 120 });
    expect(decide({ requestedTtl: 86400 })).toMatchObject({ allow: true, ttlSeconds: 3600 });
    expect(decide({ roleName: 'short', requestedTtl: 3600 })).toMatchObject({ allow: true, ttlSeconds: 300 });
    expect(decide({ roleName: 'short' })).toMatchObject({ allow: true, ttlSeconds: 60 });
  });

  it("clamps the TTL to the task's deadline", () => {
    expect(decide({ task: task({ deadline: at(90) }) })).toMatchObject({ allow: true, ttlSeconds: 90 });
    expect(decide({ task: task({ deadline: at(1.5) }), requestedTtl: 600 })).toMatchObject({ allow: true, ttlSeconds: 1 });
  });

  it('refuses a missing task as task_not_found', () => {
    expect(decide({ task: undefined })).toMatchObject({ allow: false, code: 'task_not_found' });
  });

  it('refuses a task bound to another subject as task_not_found', () => {
    expect(decide({ identity: identity('system:serviceaccount:agents:other') })).toMatchObject({
      allow: false,
      code: 'task_not_found',
    });
  });

  it('refuses the right subject from another issuer when the task names its issuer', () => {
    expect(decide({ identity: identity(AGENT, 'github') })).toMatchObject({ allow: false, code: 'task_not_found' });
  });

  it('accepts the subject from any issuer when the task names none (then the role rules decide)', () => {
    const unpinned = task({ agentIssuer: null });
    expect(decide({ task: unpinned })).toMatchObject({ allow: true });
    expect(decide({ task: unpinned, identity: identity(AGENT, 'github') })).toMatchObject({
      allow: false,
      code: 'role_denied',
    });
  });

  it('checks binding before anything else about the task', () => {
    const stranger = identity('system:serviceaccount:agents:other');
    expect(decide({ identity: stranger, task: task({ status: 'completed' }) })).toMatchObject({ code: 'task_not_found' });
    expect(decide({ identity: stranger, roleName: 'nope' })).toMatchObject({ code: 'task_not_found' });
  });

  it('refuses a completed task as task_not_open', () => {
    const done = task({ status: 'completed', outcome: 'success', completedAt: at(-10) });
    expect(decide({ task: done })).toMatchObject({ allow: false, code: 'task_not_open' });
  });

  describe('role refusals share one public code', () => {
    const cases: [string, Partial<CredentialRequest>][] = [
      ['an unknown role', { roleName: 'does-not-exist', task: task({ roles: ['does-not-exist'] }) }],
      ['an unknown role the task does not list', { roleName: 'nope' }],
      ['a configured role the task does not allow', { task: task({ roles: ['short'] }) }],
      ["an identity not in the role's allow rules", { roleName: 'deploy' }],
      ['an identity from the wrong issuer for the role', { roleName: 'ci-only' }],
    ];

    it.each(cases)('refuses %s as role_denied', (_name, overrides) => {
      expect(decide(overrides)).toMatchObject({ allow: false, code: 'role_denied' });
    });

    it('does not reveal which refusal it was through the code', () => {
      const codes = new Set(cases.map(([, overrides]) => {
        const decision = decide(overrides);
        return decision.allow ? 'allow' : decision.code;
      }));
      expect([...codes]).toEqual(['role_denied']);
    });
  });

  it('refuses as task_expired once the deadline has passed', () => {
    expect(decide({ task: task({ deadline: at(-1) }) })).toMatchObject({ allow: false, code: 'task_expired' });
    expect(decide({ task: task({ deadline: now }) })).toMatchObject({ allow: false, code: 'task_expired' });
    expect(decide({ task: task({ deadline: at(0.5) }) })).toMatchObject({ allow: false, code: 'task_expired' });
  });

  it('reports a past deadline only for a bound, open task and an allowed role', () => {
    const late = task({ deadline: at(-60) });
    expect(decide({ task: late, roleName: 'deploy' })).toMatchObject({ code: 'role_denied' });
    expect(decide({ task: { ...late, status: 'completed' } })).toMatchObject({ code: 'task_not_open' });
  });

  it('exposes the configured roles by name', () => {
    expect(policy.role('short')).toMatchObject({ name: 'short', ttl: 60, max_ttl: 300 });
    expect(policy.role('nope')).toBeUndefined();
  });
});
