// Two replicas on one PostgreSQL database. Each keeps the open tasks it has
// read in memory; a task closed through the other replica, or by an UPDATE
// by hand, is announced by the database, and the replica that cached it
// refuses the next request without minting a credential for it.
import { describe, expect, it } from 'vitest';
import { devTokens, http, sleep, startBroker, useChildBrokers } from '../support/child-broker.js';

describe('a task closed elsewhere, on two replicas', () => {
  const child = useChildBrokers('closure');

  it('is refused by the replica that had it cached, with no credential minted for it', { timeout: 120_000 }, async () => {
    const { pg, env } = child;
    const a = await startBroker(env);
    const b = await startBroker(env);
    const tokens = await devTokens(env, ['orchestrator', 'agent-1']);

    const cachedOnB = async (): Promise<string> => {
      const opened = await http('POST', `${a.url}/v1/tasks`, { token: tokens.orchestrator, body: { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 } });
      expect(opened.status, opened.text).toBe(201);
      const id = opened.json.task.id as string;
      const issued = await http('POST', `${b.url}/v1/credentials`, { token: tokens['agent-1'], body: { task: id, role: 'demo' } });
      expect(issued.status, issued.text).toBe(201);
      return id;
    };
    const refusedByB = async (id: string) => {
      // The announcement travels at the closing commit; this only leaves it room on a loaded machine.
      await sleep(200);
      const res = await http('POST', `${b.url}/v1/credentials`, { token: tokens['agent-1'], body: { task: id, role: 'demo' } });
      expect(res.status, res.text).toBe(409);
      expect(res.json.code).toBe('task_not_open');
      // Refused at the decision: only the first lease exists, none recorded as refused at commit.
      const rows = await pg.sql`select status, reason from leases where task_id = ${id}`;
      expect(rows).toHaveLength(1);
      expect(rows[0]!.reason).not.toBe('task_closed');
    };

    const viaA = await cachedOnB();
    const completed = await http('POST', `${a.url}/v1/tasks/${viaA}/complete`, { token: tokens.orchestrator, body: { outcome: 'success' } });
    expect(completed.status, completed.text).toBe(202);
    await refusedByB(viaA);

    const byHand = await cachedOnB();
    await pg.sql`update tasks set status = 'completed', completed_at = now() where id = ${byHand}`;
    await refusedByB(byHand);
  });
});
