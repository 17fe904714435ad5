import { readFileSync } from 'node:fs';
import { runProgram } from './cli/program.js';

// The `tasklease` command: src/cli/program.ts builds it from one registrar per command group.
const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const code = await runProgram(process.argv.slice(2), { version, env: process.env });
// undefined: the command keeps running (serve) and exits on its own.
if (code !== undefined) process.exit(code);
