// tasklease/client has no server dependencies: imported in a fresh node
// process (as a user would, by its package name), it loads no module of the
// broker (src/ outside src/client/) and none of hono, drizzle, the database
// drivers or the AWS SDK. A loader hook records every module loaded.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FORBIDDEN = /\/node_modules\/(hono|@hono|drizzle-orm|postgres|@electric-sql|@aws-sdk|@smithy|node-vault|pino|jose)\//;

it('importing tasklease/client loads nothing of the server', () => {
  const script = `
    const client = await import('tasklease/client');
    const made = client.createClient({ url: 'http://127.0.0.1:9', token: 'x' });
    if (typeof made.credentials !== 'function') throw new Error('no client');
    await new Promise((r) => setTimeout(r, 100));
    console.log(JSON.stringify(globalThis.__loadedModules));
  `;
  const out = execFileSync(
    process.execPath,
    ['--conditions=tasklease-source', '--import', 'tsx/esm', '--import', './test/client/fixtures/record-loads.mjs', '--input-type=module', '-e', script],
    { cwd: ROOT, encoding: 'utf8', timeout: 20_000 },
  );
  const loaded = (JSON.parse(out.trim().split('\n').at(-1)!) as string[]).filter((url) => url.startsWith('file:')).map((url) => fileURLToPath(url));
  const ours = loaded.filter((path) => path.startsWith(`${ROOT}src/`));
  // The hook saw the client itself, so an empty list below means something.
  expect(ours).toContain(`${ROOT}src/client/index.ts`);
  expect(ours.filter((path) => !path.startsWith(`${ROOT}src/client/`))).toEqual([]);
  expect(loaded.filter((path) => FORBIDDEN.test(path))).toEqual([]);
  expect(loaded.some((path) => path.includes('/node_modules/openapi-fetch/'))).toBe(true);
});
