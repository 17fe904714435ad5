// The `tasklease` command line as its users meet it: help, version, usage errors and
// their exit codes, through the real bin/tasklease.js; the help's command list in process.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { decodeJwt } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { createProgram, runProgram } from '../../src/cli/program.js';
import { childEnv, killAllChildren, ROOT, runCli, SOURCE_BIN, tempDataDir, type CliResult } from '../support/child-broker.js';

// Each command is a child process that starts through tsx: seconds apiece on a shared machine.
const COMMAND_TIMEOUT_MS = 60_000;
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const data = tempDataDir('cli-program');
afterAll(async () => {
  await killAllChildren();
  data.remove();
});
const env = childEnv({ TASKLEASE_DATA_DIR: data.dir });
const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, { ...env, ...extra }, COMMAND_TIMEOUT_MS, SOURCE_BIN);
const shown = (r: CliResult) => `code ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

/** The path of every command that runs something (`audit verify`, not `audit`). */
function leafCommands(command: Command, path: string[] = []): string[] {
  return command.commands.flatMap((c) => (c.commands.length ? leafCommands(c, [...path, c.name()]) : [[...path, c.name()].join(' ')]));
}

/** runProgram in this process, its output captured. */
async function runInProcess(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runProgram(argv, { version: VERSION, env, io: { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) } });
  return { code, stdout, stderr };
}

describe('tasklease --help', () => {
  it('lists every command with its description, each on its own line', async () => {
    const program = createProgram({ version: VERSION, env, io: { stdout: () => {}, stderr: () => {} }, config: async () => Promise.reject(new Error('unused')), policies: async () => Promise.reject(new Error('unused')), report: () => {} });
    const commands = leafCommands(program);
    expect(commands).toEqual(expect.arrayContaining(['serve', 'migrate', 'sweep', 'dev token', 'audit verify', 'audit checkpoint', 'aws credential-process', 'agents list', 'agents suspend']));
    const help = await runInProcess(['--help']);
    expect(help.code).toBe(0);
    for (const name of commands) expect(help.stdout, name).toMatch(new RegExp(`^  ${name}\\b.*\\S.*\\S`, 'm'));
    // One line each, in 80 columns: no description wraps onto a line of its own.
    const listed = help.stdout.slice(help.stdout.indexOf('Commands:\n')).split('\n\n')[0]!.split('\n').slice(1);
    expect(listed.filter((line) => !/^  \S/.test(line))).toEqual([]);
    expect(help.stdout).toContain('Exit codes:');
  });

  it('is printed by the real command, and a command group has its own', async () => {
    const help = await cli(['--help']);
    expect(help.code, shown(help)).toBe(0);
    expect(help.stdout).toContain('aws credential-process');
    const aws = await cli(['aws', 'credential-process', '--help']);
    expect(aws.code, shown(aws)).toBe(0);
    for (const option of ['--task <id>', '--role <name>', '--url <url>', '--token-file <file>', '--ttl <seconds>', '--config <file>']) expect(aws.stdout).toContain(option);
  });

  it('lists the options of each command', async () => {
    const token = await runInProcess(['dev', 'token', '--help']);
    expect(token.code).toBe(0);
    expect(token.stdout).toContain('Usage: tasklease dev token [options] <subject>');
    expect(token.stdout).toContain('--ttl <seconds>');
    const verify = await runInProcess(['audit', 'verify', '--help']);
    expect(verify.stdout).toContain('--checkpoint <file>');
    expect(verify.stdout).toContain('--jwks <file|url>');
  });
});

describe('tasklease usage', () => {
  it('--version prints the package version', async () => {
    const result = await cli(['--version']);
    expect(result.code, shown(result)).toBe(0);
    expect(result.stdout).toBe(`${VERSION}\n`);
  });

  it('an unknown command exits 2 with one line on stderr', async () => {
    const result = await cli(['frobnicate']);
    expect(result.code, shown(result)).toBe(2);
    expect(result.stdout).toBe('');
    expect(lines(result.stderr)).toEqual(["tasklease: unknown command 'frobnicate' (see tasklease --help)"]);
  });

  it('an unknown subcommand or option is a usage error too (exit 2, one line)', async () => {
    for (const argv of [['audit', 'frobnicate'], ['--frobnicate'], ['dev', 'token', 'a', '--ttl', 'soon']]) {
      const result = await runInProcess(argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(lines(result.stderr), argv.join(' ')).toHaveLength(1);
      expect(result.stderr).toMatch(/^tasklease: /);
    }
  });

  it('aws credential-process without --role exits 2 with one line naming it', async () => {
    const result = await cli(['aws', 'credential-process', '--task', 't-1', '--url', 'http://127.0.0.1:9']);
    expect(result.code, shown(result)).toBe(2);
    expect(result.stdout).toBe('');
    expect(lines(result.stderr)).toEqual(["tasklease: required option '--role <name>' not specified"]);
  });

  it('aws credential-process without a broker URL or a token exits 2, naming what is missing', async () => {
    const noUrl = await runInProcess(['aws', 'credential-process', '--task', 't-1', '--role', 'r']);
    expect(noUrl).toMatchObject({ code: 2, stdout: '', stderr: 'tasklease: no broker URL: pass --url or set TASKLEASE_URL\n' });
    const noToken = await runInProcess(['aws', 'credential-process', '--task', 't-1', '--role', 'r', '--url', 'http://127.0.0.1:9']);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/^tasklease: no identity token: pass --token-file/);
  });
});

describe('tasklease dev token', () => {
  it('prints one token for the subject in dev mode, with the --ttl asked for', async () => {
    const result = await cli(['dev', 'token', 'agent-7', '--ttl', '120']);
    expect(result.code, shown(result)).toBe(0);
    expect(lines(result.stdout)).toHaveLength(1);
    const claims = decodeJwt(result.stdout.trim());
    expect(claims.sub).toBe('agent-7');
    expect(claims.exp! - claims.iat!).toBe(120);
  });

  it('exits 2 outside dev mode (a config file named by --config or TASKLEASE_CONFIG)', async () => {
    const config = join(data.dir, 'tasklease.yaml');
    writeFileSync(
      config,
      'issuers: [{ name: k8s, issuer: "https://k8s.example.com" }]\nbackends: { local: { type: jwt } }\nroles: [{ name: reader, backend: local, allow: [{ issuer: k8s, subject: a }] }]\n',
    );
    for (const [args, extra] of [
      [['dev', 'token', 'agent-7', '--config', config], {}],
      [['dev', 'token', 'agent-7'], { TASKLEASE_CONFIG: config }],
    ] as const) {
      const result = await cli([...args], extra);
      expect(result.code, shown(result)).toBe(2);
      expect(result.stdout).toBe('');
      expect(lines(result.stderr)).toEqual(['tasklease: dev tokens exist only in dev mode (no config file)']);
    }
  });

  it('loads no database, server or cloud SDK: it starts fast', async () => {
    // A module hook that names every module imported, written synchronously from the hooks' thread.
    const hooks = join(data.dir, 'trace-hooks.mjs');
    writeFileSync(hooks, "import { writeSync } from 'node:fs';\nexport async function resolve(s, c, next) { const r = await next(s, c); writeSync(2, `imported ${r.url}\\n`); return r; }\n");
    const register = join(data.dir, 'trace.mjs');
    writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(new URL(`file://${hooks}`).href)});\n`);
    const result = await cli(['dev', 'token', 'agent-7'], { NODE_OPTIONS: `--import ${register}` });
    expect(result.code, shown(result)).toBe(0);
    const imported = lines(result.stderr).filter((l) => l.startsWith('imported '));
    expect(imported.some((l) => l.includes('/src/config/dev.ts')), 'the trace sees the modules dev token loads').toBe(true);
    expect(imported.filter((l) => /drizzle-orm|@electric-sql|\/postgres\/|\/hono\/|@aws-sdk|\/src\/(broker|db|http)\b/.test(l))).toEqual([]);
  });
});
