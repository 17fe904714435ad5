#!/usr/bin/env node
// Patches postgres.js 3.4.9's write scheduler, which crashes the process (or
// poisons a pooled connection) when a connection closes with a small write
// still buffered: porsager/postgres#1154, #1208 (fix proposed in #1176/#1209,
// unreleased). Found by test/reliability/db-outage.test.ts. Idempotent; run on
// every install (npm's postinstall of this project). Remove once postgres.js
// ships the fix; test/db/driver-patch.test.ts says whether it is applied.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MARK = '/* tasklease: guarded nextWrite */';
const root = fileURLToPath(new URL('../node_modules/postgres/', import.meta.url));
let failed = false;

for (const file of ['src/connection.js', 'cjs/src/connection.js']) {
  const path = root + file;
  if (!existsSync(path)) continue;
  let text = readFileSync(path, 'utf8');
  if (text.includes(MARK)) continue;
  const before = text;
  text = text.replace(
    'function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
    `function nextWrite(fn) {\n    ${MARK}\n    if (!socket) {\n      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n      chunk = nextWriteTimer = null\n      return false\n    }\n    const x = socket.write(chunk, fn)`,
  );
  // Teardown cancels the pending write but left the timer variable set, so the connection could never flush again.
  text = text.replaceAll('    clearImmediate(nextWriteTimer)\n', '    clearImmediate(nextWriteTimer)\n    nextWriteTimer = null\n    chunk = null\n');
  if (text === before || !text.includes(MARK)) {
    console.warn(`tasklease: could not patch ${path} (postgres.js changed?); see scripts/patch-postgres.mjs`);
    failed = true;
    continue;
  }
  writeFileSync(path, text);
}
process.exitCode = 0;
if (!failed) console.log('tasklease: postgres.js write scheduler is patched');
