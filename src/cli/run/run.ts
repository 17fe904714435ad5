/**
 * `tasklease run`: one lease per role, taken before the child starts, handed to the
 * child (env, files, the AWS loopback endpoint), kept alive by the SDK's handles
 * (renewal, then re-issue within the task's deadline) and released when the child
 * exits, whatever its way out. It keeps: no child starts unless every lease was
 * granted; every granted lease is released (awaited) and the private files removed
 * before the wrapper exits. Proven by test/cli/run.test.ts.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { ApprovalPendingError, createClient, defaultTokenSource, TaskleaseError, type LeaseHandle } from '../../client/index.js';
import { CliError, type CliIo } from '../command.js';
import { acquire } from './acquire.js';
import { startAwsEndpoint, type AwsEndpoint } from './aws-endpoint.js';
import { prepareChildOutputs, type ChildOutputs } from './child-env.js';
import { credentialType, parseMapping } from './mappings.js';

export interface RunCommandOptions {
  task?: string;
  role: string[];
  env: string[];
  file: string[];
  url?: string;
  tokenFile?: string;
  ttl?: number;
  waitApproval?: boolean;
  /** A routes file: a sidecar gateway for the child (docs/gateway.md), whose credentials the child never sees. */
  gateway?: string;
  command: string[];
}

export interface RunDeps {
  env: NodeJS.ProcessEnv;
  io: CliIo;
  /** Where SIGINT and SIGTERM arrive (the process). */
  signals?: NodeJS.EventEmitter;
  /** How often a pending approval is asked about (default 2 s). */
  approvalPollMs?: number;
}

/**
 * Variables of the wrapper the child must not inherit: its identity and the means to mint it (a child
 * that can ask GitHub for the agent's token can take leases the wrapper never releases)...
 */
const WITHHELD = ['TASKLEASE_TOKEN', 'TASKLEASE_TOKEN_FILE', 'ACTIONS_ID_TOKEN_REQUEST_URL', 'ACTIONS_ID_TOKEN_REQUEST_TOKEN'];
/** ...and, when an AWS role is served, every AWS setting an SDK's default chain would take before the endpoint. */
const WITHHELD_WITH_AWS = [
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_ROLE_ARN',
  'AWS_ROLE_SESSION_NAME',
];
const FORWARDED = ['SIGINT', 'SIGTERM'] as const;

/** What the broker said, in one line; a broker that could not be reached is said so. */
function refusal(role: string, err: unknown, url: string): string {
  if (err instanceof ApprovalPendingError) return `role ${role}: ${err.message}; run again with --wait-approval to wait for the decision`;
  if (err instanceof TaskleaseError) return `role ${role}: ${err.message}`;
  if (err instanceof TypeError) return `the broker at ${url} could not be reached (${(err.cause as Error | undefined)?.message ?? err.message})`;
  throw err;
}

/**
 * A gateway beside the child (`--gateway FILE`), on a loopback port of its
 * own, asking with the wrapper's identity for the wrapper's task. The child
 * gets each route's base URL (`TASKLEASE_ROUTE_<NAME>`) and, for an S3 route,
 * `AWS_ENDPOINT_URL_S3`.
 */
async function startSidecar(file: string, deps: { url: string; client: ReturnType<typeof createClient>; task: string; say: (line: string) => void }) {
  const { loadGatewayConfig } = await import('../../gateway/config.js');
  const { createGatewayLeases } = await import('../../gateway/leases.js');
  const { createGateway } = await import('../../gateway/proxy.js');
  let config;
  try {
    config = loadGatewayConfig(file);
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : 'the gateway routes could not be read');
  }
  const leases = createGatewayLeases({ url: deps.url, log: (line, msg) => deps.say(`gateway: ${msg} ${JSON.stringify(line)}`) });
  const gateway = createGateway({ config, leases, log: (line, msg) => deps.say(`gateway: ${msg} ${JSON.stringify(line)}`), sidecar: { asker: leases.self(deps.client), task: deps.task } });
  const port = await gateway.listen(0, '127.0.0.1');
  const base = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = { TASKLEASE_GATEWAY: base };
  for (const route of config.routes) {
    env[`TASKLEASE_ROUTE_${route.name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = `${base}/${route.name}`;
    if (route.service === 's3') env.AWS_ENDPOINT_URL_S3 = `${base}/${route.name}`;
  }
  return { env, signsAws: config.routes.some((r) => r.service !== undefined), stop: () => gateway.stop() };
}

/** Runs the command as `tasklease run` does; resolves with the exit code (the child's, 128+n for signal n). */
export async function runWithLeases(options: RunCommandOptions, deps: RunDeps): Promise<number> {
  const say = (line: string) => deps.io.stderr(`tasklease: ${line}\n`);
  const url = options.url ?? deps.env.TASKLEASE_URL;
  if (!url) throw new CliError('no broker URL: pass --url or set TASKLEASE_URL');
  const task = options.task ?? deps.env.TASKLEASE_TASK;
  if (!task) throw new CliError('no task: pass --task or set TASKLEASE_TASK');
  const [command, ...args] = options.command;
  if (!command) throw new CliError('no command: give it after --, e.g. tasklease run --task T --role R -- ./agent');
  const roles = [...new Set(options.role)];
  const mappings = [...options.env.map((s) => parseMapping('env', s, roles)), ...options.file.map((s) => parseMapping('file', s, roles))];
  const names = mappings.map((m) => m.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new CliError(`${twice} is given twice`);

  // The audience GitHub Actions tokens are requested for: the broker's URL, its default audience.
  const client = createClient({ url, token: defaultTokenSource({ tokenFile: options.tokenFile, env: deps.env, audience: url }) });
  const handles = new Map<string, LeaseHandle>();
  let outputs: ChildOutputs | undefined;
  let aws: AwsEndpoint | undefined;
  let gateway: Awaited<ReturnType<typeof startSidecar>> | undefined;
  // A signal before the command starts stops the wrapper here, and its leases are still released.
  const signals = deps.signals ?? process;
  const interrupted = new AbortController();
  const interrupt = (signal: NodeJS.Signals) => interrupted.abort(signal);
  for (const s of FORWARDED) signals.on(s, interrupt);
  const exitOnSignal = () => 128 + (constants.signals[interrupted.signal.reason as NodeJS.Signals] ?? 0);
  try {
    for (const role of roles) {
      if (interrupted.signal.aborted) return exitOnSignal();
      try {
        const handle = await acquire(client, task, role, {
          ttlSeconds: options.ttl,
          reissue: true,
          waitApproval: !!options.waitApproval,
          pollMs: deps.approvalPollMs ?? 2000,
          url,
          say,
          signal: interrupted.signal,
          onChange: () => outputs?.rewrite(role),
          onError: (err, h) => say(`role ${role}: the lease could not be renewed (${err instanceof TaskleaseError ? err.code : 'error'})${h.renewing ? '; retrying' : `; it ends at ${h.lease.expires_at}`}`),
        });
        handles.set(role, handle);
      } catch (err) {
        if (interrupted.signal.aborted) return exitOnSignal();
        say(refusal(role, err, url));
        return 1;
      }
    }
    const awsRoles = roles.filter((r) => credentialType(handles.get(r)!.credentials) === 'aws');
    if (awsRoles.length) aws = await startAwsEndpoint(handles);
    outputs = prepareChildOutputs(handles, mappings, aws);

    const env: NodeJS.ProcessEnv = { ...deps.env };
    for (const name of [...WITHHELD, ...(aws ? WITHHELD_WITH_AWS : [])]) delete env[name];
    if (aws) {
      env.AWS_CONTAINER_CREDENTIALS_FULL_URI = aws.uri(awsRoles[0]!);
      env.AWS_CONTAINER_AUTHORIZATION_TOKEN = aws.token;
    }
    Object.assign(env, outputs.env);
    if (options.gateway) {
      gateway = await startSidecar(options.gateway, { url, client, task, say });
      // Dummy AWS keys for an SDK pointed at a SigV4 route: the gateway signs again with the task's session.
      if (gateway.signsAws && !aws) for (const name of WITHHELD_WITH_AWS) delete env[name];
      Object.assign(env, gateway.env, gateway.signsAws && !aws ? { AWS_ACCESS_KEY_ID: 'TASKLEASEGATEWAYDUMMY', AWS_SECRET_ACCESS_KEY: 'the-gateway-signs-with-the-task-session' } : {});
    }
    if (interrupted.signal.aborted) return exitOnSignal();
    for (const s of FORWARDED) signals.off(s, interrupt);
    return await runChild(command, args, env, signals, say);
  } finally {
    for (const s of FORWARDED) signals.off(s, interrupt);
    // A second Ctrl-C or SIGTERM during the clean-up must not kill the wrapper with leases held and files on disk.
    const patience = (signal: NodeJS.Signals) => say(`${signal}: releasing the leases first`);
    for (const s of FORWARDED) signals.on(s, patience);
    try {
      // What holds secrets locally goes first; the releases may take a round trip or a retry.
      outputs?.remove();
      await aws?.close();
      // The gateway's own leases, and its last call records.
      await gateway?.stop();
      const released = await Promise.allSettled([...handles.values()].map((h) => h.release()));
      released.forEach((r, i) => {
        if (r.status === 'rejected') say(`could not release lease ${[...handles.values()][i]!.lease.id}: ${r.reason instanceof TaskleaseError ? r.reason.code : 'error'} (it ends at its expiry)`);
      });
    } finally {
      for (const s of FORWARDED) signals.off(s, patience);
    }
  }
}

/** Starts the child, forwards SIGINT and SIGTERM to it, and resolves with its exit status. */
function runChild(command: string, args: string[], env: NodeJS.ProcessEnv, signals: NodeJS.EventEmitter, say: (line: string) => void): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    for (const s of FORWARDED) signals.on(s, forward);
    const done = (code: number) => {
      for (const s of FORWARDED) signals.off(s, forward);
      resolve(code);
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      say(`could not start ${command}: ${err.code ?? err.message}`);
      done(err.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => done(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
}
