// `tasklease audit verify` and `tasklease audit checkpoint` as an operator runs
// them: child processes in dev mode, on PGlite under the data directory and on
// the real PostgreSQL.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../../src/audit/append.js';
import { readPublishedKeys } from '../../src/backends/jwt-keys.js';
import { openDatabase } from '../../src/db/client.js';
import { auditSeqs, truncateChainFrom } from '../support/audit.js';
import { childEnv, createPgDatabase, killAllChildren, runCli, tempDataDir, within, type CliResult } from '../support/child-broker.js';

const DATABASES = ['pglite', 'postgres'] as const;
// Each command is a child process (the build test/global-setup.ts makes): seconds apiece on a shared machine.
const COMMAND_TIMEOUT_MS = 90_000;
const COMMANDS_TIMEOUT_MS = 4 * COMMAND_TIMEOUT_MS;

describe.each(DATABASES)('tasklease audit on %s', (kind) => {
  let data!: ReturnType<typeof tempDataDir>;
  let env!: NodeJS.ProcessEnv;
  let url: string | undefined;
  let dropDatabase: (() => Promise<void>) | undefined;
  let jwksServer: Server | undefined;
  const file = (name: string) => join(data.dir, name);
  const cli = (...args: string[]) => runCli(['audit', ...args], env, COMMAND_TIMEOUT_MS);
  const shown = (r: CliResult) => `code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

  /** Opens the database as the CLI does, between commands (PGlite allows one process at a time). */
  async function withDb<T>(fn: (db: Awaited<ReturnType<typeof openDatabase>>['db']) => Promise<T>): Promise<T> {
    const database = await openDatabase({ url, dataDir: data.dir });
    try {
      return await fn(database.db);
    } finally {
      await database.close();
    }
  }
  const append = (n: number) =>
    withDb((db) =>
      db.transaction((tx) =>
        appendAudit(
          tx,
          Array.from({ length: n }, (_, i) => ({ at: new Date(), actor: 'test', action: 'test.event', target: `n:${i}`, details: { i } })),
        ),
      ),
    );

  beforeAll(async () => {
    data = tempDataDir(`audit-cli-${kind}`);
    const extra: Record<string, string> = { TASKLEASE_DATA_DIR: data.dir };
    if (kind === 'postgres') {
      const pg = await createPgDatabase('audit_cli');
      await pg.sql.end({ timeout: 5 });
      dropDatabase = pg.drop;
      url = extra.DATABASE_URL = pg.url;
    }
    env = childEnv(extra);
  });

  afterAll(async () => {
    try {
      await killAllChildren();
      jwksServer?.close();
    } finally {
      try {
        if (dropDatabase) await within(dropDatabase(), 30_000, 'dropping the test database');
      } finally {
        data?.remove();
      }
    }
  });

  it('signs no checkpoint where the broker keeps no keys', async () => {
    const result = await cli('checkpoint');
    expect(result.code, shown(result)).toBe(2);
    expect(result.stderr).toContain('no signing keys under');
    expect(result.stdout).toBe('');
  });

  it('finds the chain intact once a broker has run and written to it', async () => {
    // `sweep` migrates and builds the broker, which makes its first signing key.
    const sweep = await runCli(['sweep'], env, COMMAND_TIMEOUT_MS);
    expect(sweep.code, shown(sweep)).toBe(0);
    await append(12);
    const result = await cli('verify');
    expect(result.code, shown(result)).toBe(0);
    expect(result.stdout).toContain('audit chain intact: 12 events');
  });

  it('prints a checkpoint, or writes it with --out', async () => {
    const printed = await cli('checkpoint');
    expect(printed.code, shown(printed)).toBe(0);
    expect(printed.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    expect(printed.stderr).toMatch(/audit checkpoint: seq \d+, 12 events, head [0-9a-f]{64}, signed .* by key \S+/);

    const written = await cli('checkpoint', '--out', file('checkpoint.jwt'));
    expect(written.code, shown(written)).toBe(0);
    expect(written.stdout).toBe('');
    const token = readFileSync(file('checkpoint.jwt'), 'utf8').trim();
    const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8'));
    expect(header).toMatchObject({ alg: 'ES256', typ: 'tasklease-audit-checkpoint+jwt' });
    expect(readPublishedKeys(join(data.dir, 'keys')).keys.map((k) => k.kid)).toContain(header.kid);
  });

  it('verifies a growing chain against the checkpoint: the broker keys, a JWKS file, a JWKS URL', async () => {
    await append(5);
    const local = await cli('verify', '--checkpoint', file('checkpoint.jwt'));
    expect(local.code, shown(local)).toBe(0);
    expect(local.stdout).toMatch(/audit chain intact: 17 events, head at seq \d+, from the checkpoint at seq \d+/);

    const jwks = JSON.stringify(readPublishedKeys(join(data.dir, 'keys')));
    writeFileSync(file('jwks.json'), jwks);
    const fromFile = await cli('verify', '--checkpoint', file('checkpoint.jwt'), '--jwks', file('jwks.json'));
    expect(fromFile.code, shown(fromFile)).toBe(0);

    jwksServer = createServer((_, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
    await new Promise<void>((resolve) => jwksServer!.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
    const fromUrl = await cli('verify', '--checkpoint', file('checkpoint.jwt'), '--jwks', jwksUrl);
    expect(fromUrl.code, shown(fromUrl)).toBe(0);
  });

  it('refuses an altered checkpoint, and one whose key the JWKS lacks', async () => {
    const [header, payload, signature] = readFileSync(file('checkpoint.jwt'), 'utf8').trim().split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8'));
    const altered = Buffer.from(JSON.stringify({ ...claims, seq: claims.seq - 3, count: claims.count - 3 })).toString('base64url');
    writeFileSync(file('altered.jwt'), `${header}.${altered}.${signature}\n`);
    const result = await cli('verify', '--checkpoint', file('altered.jwt'));
    expect(result.code, shown(result)).toBe(1);
    expect(result.stdout).toContain('audit checkpoint REFUSED');
    expect(result.stdout).toContain('signature does not verify');

    writeFileSync(file('empty-jwks.json'), JSON.stringify({ keys: [] }));
    const noKey = await cli('verify', '--checkpoint', file('checkpoint.jwt'), '--jwks', file('empty-jwks.json'));
    expect(noKey.code, shown(noKey)).toBe(1);
    expect(noKey.stdout).toContain('no key in');
  });

  it('exits 1 once the 5 newest rows are deleted: the head no longer matches', async () => {
    const seqs = await withDb(auditSeqs);
    await withDb((db) => db.execute(sql`delete from audit_events where seq >= ${seqs.at(-5)!}`));
    const result = await cli('verify');
    expect(result.code, shown(result)).toBe(1);
    expect(result.stdout).toContain('head_mismatch');
    expect(result.stdout).toContain('removed from the end');
  });

  it('exits 1 when rows are removed back past the checkpoint and audit_head is rewritten to match', async () => {
    const anchorSeq = JSON.parse(Buffer.from(readFileSync(file('checkpoint.jwt'), 'utf8').split('.')[1]!, 'base64url').toString('utf8')).seq as number;
    await withDb((db) => truncateChainFrom(db, anchorSeq - 2));
    const plain = await cli('verify');
    expect(plain.code, shown(plain)).toBe(0);
    const result = await cli('verify', '--checkpoint', file('checkpoint.jwt'));
    expect(result.code, shown(result)).toBe(1);
    expect(result.stdout).toContain('checkpoint_missing');
  });

  it('wants --checkpoint beside --jwks', async () => {
    const result = await cli('verify', '--jwks', file('jwks.json'));
    expect(result.code, shown(result)).toBe(2);
    expect(result.stderr).toContain('--checkpoint');
  });
}, COMMANDS_TIMEOUT_MS);
