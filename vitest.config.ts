import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // The SDK's own entry, as package.json `exports` names it for this repository (the `tasklease-source` condition).
    alias: { 'tasklease/client': fileURLToPath(new URL('./src/client/index.ts', import.meta.url)) },
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // PGlite's first start is a WASM initdb (~5 s); files share one instance each.
    hookTimeout: 60_000,
    testTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
