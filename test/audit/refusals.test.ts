import { describe, expect, it } from 'vitest';
import type { AuditInput } from '../../src/audit/append.js';
import { createRefusalAudit } from '../../src/audit/refusals.js';
import { createManualClock } from '../../src/clock.js';

const refusal = (subject: string, requestId: string): AuditInput => ({
  at: new Date(0),
  actor: `test/${subject}`,
  action: 'credential.denied',
  target: 'task:t1',
  decision: 'deny',
  reason: 'rate limit',
  details: { code: 'rate_limited', role: 'demo', token_sha256: 'a'.repeat(64), retry_after: 1 },
  requestId,
});

function harness(options: { maxKeys?: number; failing?: () => boolean } = {}) {
  const clock = createManualClock();
  const written: AuditInput[] = [];
  const errors: unknown[] = [];
  const audit = createRefusalAudit({
    clock,
    windowMs: 60_000,
    maxKeys: options.maxKeys,
    log: { error: (obj: unknown) => void errors.push(obj) } as never,
    write: async (events) => {
      if (options.failing?.()) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
      written.push(...events);
    },
  });
  return { clock, written, errors, audit };
}

describe('repeated refusals, audited once per window', () => {
  it('keeps memory bounded: a new identity past maxKeys ends the oldest window early, with its count', async () => {
    const { written, audit } = harness({ maxKeys: 3 });
    for (let agent = 0; agent < 10; agent++) {
      for (let i = 0; i < 5; i++) await audit.refuse(`k${agent}`, refusal(`agent-${agent}`, `r${agent}-${i}`), { wait: false });
    }
    expect(audit.size).toBe(3);
    await audit.drain();
    expect(audit.size).toBe(0);
    // Every agent: its first refusal, then one event counting its four repeats; nothing lost to eviction.
    for (let agent = 0; agent < 10; agent++) {
      const mine = written.filter((e) => e.actor === `test/agent-${agent}`);
      expect(mine.map((e) => e.details?.count)).toEqual([undefined, 4]);
      expect(mine[0]!.requestId).toBe(`r${agent}-0`);
    }
  });

  it('starts a new window once the last one has ended, and writes the ended one', async () => {
    const { clock, written, audit } = harness();
    await audit.refuse('k', refusal('a', 'r1'), { wait: true });
    await audit.refuse('k', refusal('a', 'r2'), { wait: true });
    clock.advance(60);
    await audit.refuse('k', refusal('a', 'r3'), { wait: true });
    await audit.flushDue();
    expect(written.map((e) => [e.requestId, e.details?.count])).toEqual([
      ['r1', undefined],
      [null, 1],
      ['r3', undefined],
    ]);
    expect(audit.size).toBe(1);
  });

  it('counts a first refusal whose write failed with its repeats, and a waiting caller sees the failure', async () => {
    let down = true;
    const { written, errors, audit } = harness({ failing: () => down });
    await expect(audit.refuse('k', refusal('a', 'r1'), { wait: true })).rejects.toThrow('connection refused');
    await audit.refuse('k', refusal('a', 'r2'), { wait: true });
    await audit.refuse('j', refusal('b', 'r3'), { wait: false });
    await audit.flushDue();
    expect(errors).toHaveLength(1); // the background write of `j`'s first refusal
    down = false;
    await audit.drain();
    expect(written.map((e) => [e.actor, e.details?.count])).toEqual([
      ['test/a', 2],
      ['test/b', 1],
    ]);
    expect(written.every((e) => e.details?.token_sha256 === undefined && e.details?.retry_after === undefined)).toBe(true);
  });
});
