import { Argument, type Command } from 'commander';
import type { CliContext } from '../command.js';

/** `completion bash|zsh`: a completion script made from this program's commands (docs/cli.md). */
export function registerCompletion(program: Command, cli: CliContext): void {
  program
    .command('completion')
    .summary('print a bash or zsh completion script')
    .description('Print a completion script for <shell>, made from these commands. Load it with: source <(tasklease completion bash)')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .action(async (shell: 'bash' | 'zsh') => {
      const { bashCompletion, zshCompletion } = await import('../completion.js');
      const script = shell === 'bash' ? bashCompletion(program) : zshCompletion(program);
      cli.report({ code: 0, stdout: script.trimEnd() });
    });
}
