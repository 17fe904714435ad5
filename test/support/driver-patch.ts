import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The two builds of postgres.js that patches/postgres+3.4.9.patch changes. */
export const PATCHED_FILES = ['postgres/src/connection.js', 'postgres/cjs/src/connection.js'] as const;

/**
 * What is missing of the write-scheduler patch in one node_modules folder
 * (empty when it is applied). Without it, a connection cut with a write
 * buffered crashes the process (porsager/postgres#1154, #1208).
 */
export function missingDriverPatch(nodeModules: string): string[] {
  return PATCHED_FILES.flatMap((file) => {
    const text = readFileSync(join(nodeModules, file), 'utf8');
    const missing: string[] = [];
    if (!text.includes('/* tasklease: guarded nextWrite */')) missing.push(`${file}: the guarded nextWrite`);
    if (!text.includes('clearImmediate(nextWriteTimer)\n    nextWriteTimer = null')) missing.push(`${file}: the cleared write timer`);
    return missing;
  });
}
