#!/usr/bin/env node
// Runs the TypeScript sources through tsx, so `npm start` and `npx tasklease`
// work on a fresh clone without a build step. The container image runs the
// compiled dist/main.js instead.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
