import { sql } from 'drizzle-orm';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JWTVerifyGetKey } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { CHECKPOINT_TYP, CheckpointRefused, createCheckpoint, verifyCheckpoint } from '../../src/audit/checkpoint.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { auditActivity, auditSeqs, rehashChainFrom, resetAuditChain, truncateChainFrom } from '../support/audit.js';
import { type TestBroker, useTestBroker } from '../support/broker.js';
import { DRIVERS, type TestDatabase } from '../support/db.js';

const ISSUER = 'https://tasklease.test';

describe.each(DRIVERS)('signed audit checkpoints on %s', (driver) => {
  let database!: TestDatabase;
  let t!: TestBroker;
  useTestBroker(driver, (d, b) => ((database = d), (t = b)));

  let keys!: JWTVerifyGetKey;
  beforeEach(async () => {
    await resetAuditChain(database.db);
    keys = createLocalJWKSet(await t.broker.keys.jwks());
  });

  const checkpoint = async () => {
    const made = await createCheckpoint({ db: database.db, keys: t.broker.keys, issuer: ISSUER, clock: t.clock });
    if (!made.ok) throw new Error(`no checkpoint: ${made.problem}`);
    return made;
  };
  const verified = (token: string) => verifyCheckpoint(token, keys, ISSUER, 'the test JWKS');

  it('signs the head, the newest seq and the row count; the chain verifies against it as it grows', async () => {
    await auditActivity(t);
    const seqs = await auditSeqs(database.db);
    const made = await checkpoint();
    expect(made.checkpoint).toMatchObject({ seq: seqs.at(-1), count: seqs.length, at: new Date(Math.floor(t.clock.now().getTime() / 1000) * 1000) });
    const anchor = await verified(made.token);
    expect(anchor).toEqual(made.checkpoint);
    expect(await verifyAuditChain(database.db, { checkpoint: anchor })).toMatchObject({ ok: true, checked: seqs.length });

    await auditActivity(t);
    expect(await verifyAuditChain(database.db, { checkpoint: anchor, pageSize: 5 })).toMatchObject({ ok: true });
  });

  it('a checkpoint of an empty chain holds for any chain', async () => {
    const anchor = await verified((await checkpoint()).token);
    expect(anchor).toMatchObject({ seq: 0, count: 0 });
    await auditActivity(t);
    expect(await verifyAuditChain(database.db, { checkpoint: anchor })).toMatchObject({ ok: true });
  });

  it('finds rows removed back past the checkpoint, with audit_head rewritten to match', async () => {
    await auditActivity(t);
    const anchor = await verified((await checkpoint()).token);
    await auditActivity(t);
    const seqs = await auditSeqs(database.db);
    await truncateChainFrom(database.db, seqs[seqs.indexOf(anchor.seq) - 3]!);
    // Without the checkpoint, nothing outside the table remembers the head: this is the limit it closes.
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true });
    expect(await verifyAuditChain(database.db, { checkpoint: anchor })).toMatchObject({ ok: false, seq: anchor.seq, problem: 'checkpoint_missing' });
  });

  it('finds rows removed back to the checkpoint itself, with rows appended after', async () => {
    await auditActivity(t);
    const anchor = await verified((await checkpoint()).token);
    await auditActivity(t);
    await truncateChainFrom(database.db, anchor.seq);
    await auditActivity(t);
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true });
    expect(await verifyAuditChain(database.db, { checkpoint: anchor, pageSize: 4 })).toMatchObject({ ok: false, seq: anchor.seq, problem: 'checkpoint_missing' });
  });

  it('finds a consistent rewrite of the chain before the checkpoint', async () => {
    await auditActivity(t);
    const anchor = await verified((await checkpoint()).token);
    const seqs = await auditSeqs(database.db);
    await database.db.execute(sql`update audit_events set reason = 'nothing to see' where seq = ${seqs[2]!}`);
    await rehashChainFrom(database.db, seqs[2]!);
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true });
    expect(await verifyAuditChain(database.db, { checkpoint: anchor })).toMatchObject({ ok: false, seq: anchor.seq, problem: 'checkpoint_mismatch' });
  });

  it('signs nothing over a chain whose end is already gone', async () => {
    await auditActivity(t);
    const seqs = await auditSeqs(database.db);
    await database.db.execute(sql`delete from audit_events where seq >= ${seqs.at(-5)!}`);
    const made = await createCheckpoint({ db: database.db, keys: t.broker.keys, issuer: ISSUER, clock: t.clock });
    expect(made).toMatchObject({ ok: false, seq: seqs.at(-6), problem: 'head_mismatch' });
  });

  it('an admin fetches one over the API (GET /v1/audit/checkpoint); it verifies against /.well-known/jwks.json', async () => {
    await auditActivity(t);
    const res = await t.call('GET', '/v1/audit/checkpoint', { subject: 'admin' });
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const jwks = await t.call('GET', '/.well-known/jwks.json', {});
    const anchor = await verifyCheckpoint(res.json.checkpoint, createLocalJWKSet(jwks.json), ISSUER, 'the published JWKS');
    expect(res.json).toEqual({ checkpoint: res.json.checkpoint, seq: anchor.seq, count: anchor.count, head: anchor.hash, at: anchor.at.toISOString(), kid: anchor.kid });
    expect(await verifyAuditChain(database.db, { checkpoint: anchor })).toMatchObject({ ok: true });

    const seqs = await auditSeqs(database.db);
    await database.db.execute(sql`delete from audit_events where seq >= ${seqs.at(-2)!}`);
    const broken = await t.call('GET', '/v1/audit/checkpoint', { subject: 'admin' });
    expect(broken.status).toBe(409);
    expect(broken.json).toMatchObject({ code: 'audit_chain_broken' });
  });

  describe('refuses a forged or altered checkpoint', () => {
    const refused = async (token: string, why: RegExp) => {
      const error = await verified(token).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(CheckpointRefused);
      expect((error as Error).message).toMatch(why);
    };
    const part = (token: string, i: number) => JSON.parse(Buffer.from(token.split('.')[i]!, 'base64url').toString('utf8'));
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

    it('its claims altered after signing', async () => {
      await auditActivity(t);
      const { token } = await checkpoint();
      const [header, , signature] = token.split('.');
      const seqs = await auditSeqs(database.db);
      await refused(`${header}.${encode({ ...part(token, 1), seq: seqs[3], count: 4 })}.${signature}`, /signature does not verify/);
      await refused(`${header}.${encode({ ...part(token, 1), head: 'f'.repeat(64) })}.${signature}`, /signature does not verify/);
    });

    it('signed by another key under the broker key id', async () => {
      const { token } = await checkpoint();
      const { privateKey } = await generateKeyPair('ES256');
      const forged = await new SignJWT(part(token, 1)).setProtectedHeader(part(token, 0)).sign(privateKey);
      await refused(forged, /signature does not verify/);
    });

    it('signed by a key the JWKS does not hold', async () => {
      const { token } = await checkpoint();
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const forged = await new SignJWT(part(token, 1)).setProtectedHeader({ ...part(token, 0), kid: 'not-a-broker-key' }).sign(privateKey);
      await refused(forged, /no key in the test JWKS/);
      // Nor does a key embedded in the header help.
      const embedded = await new SignJWT(part(token, 1))
        .setProtectedHeader({ alg: 'ES256', typ: CHECKPOINT_TYP, jwk: await exportJWK(privateKey) })
        .sign(privateKey);
      await refused(embedded, /signature does not verify/);
    });

    it('a credential the broker signed, presented as a checkpoint', async () => {
      await auditActivity(t);
      const { json } = await t.call('POST', '/v1/tasks', { subject: 'orchestrator' }, { agent: { subject: 'agent-1' }, roles: ['demo'], ttl_seconds: 600 });
      const issued = await t.call('POST', '/v1/credentials', { subject: 'agent-1' }, { task: json.task.id, role: 'demo' });
      expect(issued.status).toBe(201);
      await refused(issued.json.credentials.token as string, /not a checkpoint/);
    });

    it('a checkpoint of another broker (issuer)', async () => {
      const made = await createCheckpoint({ db: database.db, keys: t.broker.keys, issuer: 'https://elsewhere.test', clock: t.clock });
      await refused((made as { token: string }).token, /"iss" claim/);
    });

    it('not a JWT at all', async () => {
      await refused('not a checkpoint', /not a valid signed checkpoint/);
    });
  });
});
