import type { Command } from 'commander';
import type { CliContext } from '../command.js';

/** `gateway`: credentials attached to an agent's calls, never handed to it (docs/gateway.md). A client of a remote broker. */
export function registerGateway(program: Command, cli: CliContext): void {
  program
    .command('gateway')
    .summary("forward an agent's HTTP calls with its task's credentials attached")
    .description(
      "Serve /<route>/<path> for each route of --routes (a YAML file with a `gateway:` section), forwarding allowed calls to the route's " +
        "upstream with the task's credential attached: a bearer token, a SigV4 signature or X-Vault-Token. The agent never sees it.",
    )
    .requiredOption('--routes <file>', 'the YAML file whose `gateway:` section lists listen, routes, timeout and size limits')
    .option('--task <id>', 'sidecar: the task when a call names none (default: $TASKLEASE_TASK)')
    .option('--shared', 'a shared gateway: every call brings its own identity as Proxy-Authorization: Bearer')
    .option('--url <url>', "the broker's URL (default: $TASKLEASE_URL)")
    .option('--token-file <file>', "sidecar: the agent's identity token, re-read for every request (default: $TASKLEASE_TOKEN, the Kubernetes token, GitHub Actions OIDC)")
    .action(async (options: { routes: string; task?: string; shared?: boolean; url?: string; tokenFile?: string }) => {
      const { runGateway } = await import('../../gateway/serve.js');
      cli.report({ code: await runGateway(options, { env: cli.env, stderr: cli.io.stderr }) });
    });
}
