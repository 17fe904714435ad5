// `tasklease completion bash|zsh`: the script is made from the program's own command tree, so it
// names every command there is; the bash one is sourced in a real bash and asked to complete.
import { execFileSync } from 'node:child_process';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { createProgram, runProgram } from '../../src/cli/program.js';

const io = { stdout: () => {}, stderr: () => {} };
const program = createProgram({ version: '0', env: {}, io, config: async () => Promise.reject(new Error('unused')), policies: async () => Promise.reject(new Error('unused')), report: () => {} });

/** `tasklease completion <shell>` in this process: its exit code and script. */
async function script(shell: string) {
  let stdout = '';
  let stderr = '';
  const code = await runProgram(['completion', shell], { version: '0', env: {}, io: { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) } });
  return { code, stdout, stderr };
}

/** Every command below `command`, as [its group's path, its name]. */
function tree(command: Command, path: string[] = []): [string, string][] {
  return command.commands.flatMap((c) => [[path.join(' '), c.name()] as [string, string], ...tree(c, [...path, c.name()])]);
}

/** What the completion function puts in COMPREPLY for the words of `line` (a trailing space: a new, empty word). */
function complete(bash: string, line: string): string[] {
  const words = line.split(' ');
  const out = execFileSync(
    'bash',
    ['-c', `${bash}\nCOMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _tasklease; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', ...words],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter((w) => w !== '');
}

describe('tasklease completion bash', () => {
  it('names every command and subcommand of the program, aliases too', async () => {
    const { code, stdout } = await script('bash');
    expect(code).toBe(0);
    const commands = tree(program);
    expect(commands.map(([, name]) => name)).toEqual(expect.arrayContaining(['serve', 'run', 'leases', 'agents', 'completion', 'credential-process', 'verify']));
    for (const [group, name] of commands) expect(stdout, `${group} ${name}`).toContain(`'${group}:${name}'`);
    expect(stdout).toContain(`':task' | ':tasks')`);
  });

  it('completes a command, a group\'s subcommands, options and choices in a real bash', async () => {
    const { stdout: bash } = await script('bash');
    expect(complete(bash, 'tasklease le')).toEqual(['leases']);
    expect(complete(bash, 'tasklease leases ')).toEqual(['list', 'show', 'revoke']);
    // Every top-level command, at the first word.
    expect(complete(bash, 'tasklease ').sort()).toEqual(program.commands.flatMap((c) => [c.name(), ...c.aliases()]).sort());
    expect(complete(bash, 'tasklease tasks ')).toEqual(program.commands.find((c) => c.name() === 'task')!.commands.map((c) => c.name()));
    expect(complete(bash, 'tasklease completion ')).toEqual(['bash', 'zsh']);
    expect(complete(bash, 'tasklease leases revoke --re')).toEqual(['--reason']);
    // An option's value is not taken for a command: `--task leases` leaves run's arguments to the shell.
    expect(complete(bash, 'tasklease run --task leases ')).toEqual([]);
    expect(complete(bash, 'tasklease run --ro')).toEqual(['--role']);
    expect(complete(bash, 'tasklease agents ')).toEqual(['list', 'show', 'suspend', 'resume', 'suspensions', 'lift']);
    expect(complete(bash, 'tasklease agents suspend --subject')).toEqual(['--subject', '--subject-pattern']);
  });
});

describe('tasklease completion zsh', () => {
  it('is a zsh completion function naming every command', async () => {
    const { code, stdout } = await script('zsh');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^#compdef tasklease\n/);
    for (const [group, name] of tree(program)) expect(stdout, `${group} ${name}`).toContain(`'${group}:${name}'`);
  });

  it('refuses another shell as a usage error', async () => {
    const { code, stderr } = await script('fish');
    expect(code).toBe(2);
    expect(stderr).toMatch(/^tasklease: .*fish.*bash, zsh/);
  });
});
