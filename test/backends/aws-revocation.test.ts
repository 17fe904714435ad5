import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { agentTagValue, planRevocationPolicy, policySize, ROLE_WIDE, type Cutoff, type RevocationEntry } from '../../src/backends/aws-revocation.js';

const NOW = new Date('2030-01-01T12:00:00.500Z');
const at = (secondsFromNow: number) => new Date(NOW.getTime() + secondsFromNow * 1000);
const entry = (agent: string, createdAgo = 10): RevocationEntry => ({ sourceIdentity: `tl-${randomUUID()}`, agent, expiresAt: at(900), createdAt: at(-createdAgo), untagged: false });
const many = (agent: string, n: number) => Array.from({ length: n }, () => entry(agent));
const sids = (doc: { Statement: { Sid: string }[] } | undefined) => doc?.Statement.map((s) => s.Sid) ?? [];

describe('the deny policy rendered from stored entries', () => {
  it('names every live entry while it fits, drops expired ones, and is nothing when nothing is left', () => {
    const live = many('test/a', 3);
    const expired = { ...entry('test/a'), expiresAt: at(-1) };
    const plan = planRevocationPolicy([...live, expired], [], NOW, 10_240, 3600);
    expect(plan.added).toEqual([]);
    const text = JSON.stringify(plan.document);
    for (const e of live) expect(text).toContain(e.sourceIdentity);
    expect(text).not.toContain(expired.sourceIdentity);
    expect(planRevocationPolicy([expired], [], NOW, 10_240, 3600).document).toBeUndefined();
  });

  it('over budget, collapses the heaviest agent into a cut-off on its own sessions and keeps naming the others', () => {
    const heavy = many('test/churn', 300);
    const others = [entry('test/b'), entry('test/c')];
    const plan = planRevocationPolicy([...heavy, ...others], [], NOW, 10_240, 3600);
    expect(plan.added).toHaveLength(1);
    expect(plan.added[0]).toMatchObject({ agent: 'test/churn', agents: ['test/churn'], entries: 300, cutoffAt: new Date('2030-01-01T12:00:01Z') });
    expect(plan.added[0]!.expiresAt.getTime()).toBeGreaterThanOrEqual(plan.added[0]!.cutoffAt.getTime() + 3600_000);
    const doc = plan.document!;
    expect(policySize(doc)).toBeLessThanOrEqual(10_240);
    const text = JSON.stringify(doc);
    for (const e of others) expect(text).toContain(e.sourceIdentity);
    expect(text).not.toContain(heavy[0]!.sourceIdentity);
    const cut = doc.Statement.find((s) => s.Sid.startsWith('TaskleaseAgent'))!;
    expect(cut.Condition).toEqual({
      StringEquals: { 'aws:PrincipalTag/tasklease:agent-id': agentTagValue('test/churn') },
      DateLessThan: { 'aws:TokenIssueTime': '2030-01-01T12:00:01Z' },
    });
    expect(sids(doc)).not.toContain('TaskleaseCutoff');
  });

  it('a recorded cut-off keeps covering the entries it replaced; entries recorded after it are named again', () => {
    const old = many('test/churn', 300);
    const cutoffs: Cutoff[] = [{ agent: 'test/churn', cutoffAt: at(-5), expiresAt: at(3600) }];
    const later = entry('test/churn', 1);
    const plan = planRevocationPolicy([...old, later], cutoffs, NOW, 10_240, 3600);
    expect(plan.added).toEqual([]);
    const text = JSON.stringify(plan.document);
    expect(text).toContain(later.sourceIdentity);
    expect(text).not.toContain(old[0]!.sourceIdentity);
    expect(sids(plan.document).filter((s) => s.startsWith('TaskleaseAgent'))).toHaveLength(1);
  });

  it('falls back to the role-wide cut-off only when per-agent ones cannot fit, naming every agent involved', () => {
    // 300 agents with one revoked session each: one agent's cut-off is bigger than its one entry.
    const spread = Array.from({ length: 300 }, (_, i) => entry(`test/agent-${i}`));
    const plan = planRevocationPolicy(spread, [], NOW, 10_240, 3600);
    expect(plan.added).toHaveLength(1);
    expect(plan.added[0]).toMatchObject({ agent: ROLE_WIDE, entries: 300 });
    expect(plan.added[0]!.agents).toHaveLength(300);
    expect(plan.document!.Statement).toEqual([
      { Sid: 'TaskleaseCutoff', Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateLessThan: { 'aws:TokenIssueTime': '2030-01-01T12:00:01Z' } } },
    ]);
  });

  it('never collapses entries whose sessions may lack the agent tag into a per-agent cut-off: only the role-wide one covers them, and says so', () => {
    // 300 entries of one agent, adopted from before the tag existed: a per-agent cut-off (StringEquals on the tag) would not match them.
    const untagged = many('test/old', 300).map((e) => ({ ...e, untagged: true }));
    const plan = planRevocationPolicy([...untagged, entry('test/b')], [], NOW, 10_240, 3600);
    expect(plan.added).toHaveLength(1);
    expect(plan.added[0]).toMatchObject({ agent: ROLE_WIDE, entries: 301, agents: ['test/old', 'test/b'] });
    expect(sids(plan.document)).toEqual(['TaskleaseCutoff']);
    // An agent's earlier cut-off does not cover its untagged entries: they stay named.
    const old = { ...entry('test/c', 60), untagged: true };
    const kept = planRevocationPolicy([old], [{ agent: 'test/c', cutoffAt: at(-1), expiresAt: at(3600) }], NOW, 10_240, 3600);
    expect(JSON.stringify(kept.document)).toContain(old.sourceIdentity);
  });

  it('with no budget at all (IAM said LimitExceeded), one role-wide cut-off replaces entries and agent cut-offs', () => {
    const plan = planRevocationPolicy([entry('test/a'), entry('test/b')], [{ agent: 'test/c', cutoffAt: at(-60), expiresAt: at(7200) }], NOW, 0, 3600);
    expect(plan.added.map((c) => c.agent)).toEqual([ROLE_WIDE]);
    expect(plan.added[0]!.expiresAt.getTime()).toBeGreaterThanOrEqual(at(7200).getTime());
    expect(sids(plan.document)).toEqual(['TaskleaseCutoff']);
  });
});
