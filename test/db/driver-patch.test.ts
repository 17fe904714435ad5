import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('the postgres.js write-scheduler patch (patches/postgres+3.4.9.patch)', () => {
  it.each(['node_modules/postgres/src/connection.js', 'node_modules/postgres/cjs/src/connection.js'])('is applied to %s', (file) => {
    // Without it, a connection cut with a write buffered crashes the process (porsager/postgres#1154, #1208).
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('/* tasklease: guarded nextWrite */');
    expect(text).toContain('clearImmediate(nextWriteTimer)\n    nextWriteTimer = null');
  });
});
