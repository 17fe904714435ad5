// Replays a Dockerfile's file steps without a container engine: each stage's
// filesystem is a folder under a scratch root (the image's /app is
// <root>/app), COPY reads the build context through .dockerignore, RUN's npm,
// node and file commands run with sh in the stage's folder on the host's node.
// The invariant: what the replay produces is what the image holds, except for
// users and ownership (the replay runs as the test's user) and the base image's
// own files (the host's node and npm stand in). test/deploy/image.test.ts uses it.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, posix, relative } from 'node:path';
import ignoreModule from '@balena/dockerignore';
import { CannotFollow, expand, type DockerfilePlan, type Step } from './dockerfile-plan.js';

export interface ReplayedStage {
  name: string;
  /** The folder standing for the stage's filesystem root. */
  root: string;
  /** The image's WORKDIR (an image path). */
  workdir: string;
  /** The image's ENV, as the Dockerfile sets it (image paths unmapped). */
  env: Record<string, string>;
  user: string | undefined;
  entrypoint: string[];
  cmd: string[];
  /** The HEALTHCHECK command; null for NONE, undefined when unset. */
  healthcheck: string[] | null | undefined;
}

export interface ReplayOptions {
  plan: DockerfilePlan;
  /** The Dockerfile's path: BuildKit reads `<Dockerfile>.dockerignore` before the context's `.dockerignore`. */
  dockerfile: string;
  /** The build context (the folder `docker build` is given). */
  context: string;
  /** An empty folder; each stage gets a folder under it. */
  scratch: string;
  /** The host environment RUN steps start from (PATH, HOME, npm settings), under the image's ENV. */
  hostEnv: Record<string, string>;
  /** Told what was skipped or stood in for, so the test's output says it. */
  note: (text: string) => void;
  runTimeoutMs: number;
}

/** An image path in the stage's folder. */
export const hostPath = (stage: Pick<ReplayedStage, 'root'>, imagePath: string) => join(stage.root, posix.resolve('/', imagePath));

/** An ENV value that is one absolute path (not a PATH-like list) names a place in the image. */
const isImagePath = (value: string) => /^\/[^:]*$/.test(value);

/** The image's ENV with its absolute paths mapped into the stage's folder. */
export function mappedEnv(stage: ReplayedStage): Record<string, string> {
  return Object.fromEntries(Object.entries(stage.env).map(([k, v]) => [k, isImagePath(v) ? hostPath(stage, v) : v]));
}

/** How to start the image's ENTRYPOINT + CMD on the host: image paths that exist in the stage become host paths. */
export function imageCommand(stage: ReplayedStage, argv = [...stage.entrypoint, ...stage.cmd]): { command: string; args: string[]; cwd: string } {
  const mapped = argv.map((word) => (word.startsWith('/') && existsSync(hostPath(stage, word)) ? hostPath(stage, word) : word));
  if (mapped.length === 0) throw new Error(`stage ${stage.name} has no ENTRYPOINT or CMD`);
  return { command: mapped[0]!, args: mapped.slice(1), cwd: hostPath(stage, stage.workdir) };
}

function runSh(command: string, cwd: string, env: Record<string, string>, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`\`${command}\` in ${cwd} exited ${code ?? signal}${signal === 'SIGKILL' ? ` (killed after ${timeoutMs} ms)` : ''}:\n${output.slice(-4000)}`));
    });
  });
}

function contextFilter(options: ReplayOptions): (path: string) => boolean {
  const own = `${options.dockerfile}.dockerignore`;
  const file = existsSync(own) ? own : join(options.context, '.dockerignore');
  const ignore = ignoreModule.default().add(existsSync(file) ? readFileSync(file, 'utf8').split('\n') : []);
  return (path) => {
    const rel = relative(options.context, path);
    return rel === '' || !ignore.ignores(rel);
  };
}

/** Replays every stage in order; the last one is the image `docker build` makes. */
export async function replayDockerfile(options: ReplayOptions): Promise<ReplayedStage[]> {
  const included = contextFilter(options);
  const done: ReplayedStage[] = [];
  for (const plan of options.plan.stages) {
    const root = join(options.scratch, `stage-${done.length}-${plan.name}`);
    const base = 'stage' in plan.base ? done.find((s) => s.name === (plan.base as { stage: string }).stage)! : undefined;
    if (base) cpSync(base.root, root, { recursive: true, verbatimSymlinks: true });
    else {
      mkdirSync(root, { recursive: true });
      options.note(`FROM ${(plan.base as { image: string }).image} AS ${plan.name}: the host's node ${process.version} and npm stand in for the image's`);
    }
    const stage: ReplayedStage = base
      ? { ...base, name: plan.name, root, env: { ...base.env } }
      : { name: plan.name, root, workdir: '/', env: {}, user: undefined, entrypoint: [], cmd: [], healthcheck: undefined };
    let cmdInherited = base !== undefined;
    const args: Record<string, string> = {};
    for (const step of plan.steps) {
      if (step.kind === 'cmd') cmdInherited = false;
      if (step.kind === 'entrypoint' && cmdInherited) stage.cmd = []; // Docker resets a CMD inherited from the base
      await replayStep(step, stage, args, done, included, options);
    }
    done.push(stage);
  }
  return done;
}

async function replayStep(
  step: Step,
  stage: ReplayedStage,
  args: Record<string, string>,
  done: ReplayedStage[],
  included: (path: string) => boolean,
  options: ReplayOptions,
): Promise<void> {
  const vars = () => ({ ...args, ...stage.env });
  switch (step.kind) {
    case 'arg':
      if (step.value !== undefined) args[step.name] = step.value;
      return;
    case 'workdir':
      stage.workdir = posix.resolve(stage.workdir, expand(step.path, vars()));
      mkdirSync(hostPath(stage, stage.workdir), { recursive: true });
      return;
    case 'env':
      for (const [name, value] of step.vars) stage.env[name] = expand(value, vars());
      return;
    case 'copy':
      return copy(step, stage, vars(), done, included, options);
    case 'run': {
      const env = { ...options.hostEnv, ...args, ...mappedEnv(stage) };
      for (const command of step.commands) {
        if (command.skip) {
          options.note(`line ${step.line}: skipped \`${command.argv.join(' ')}\`: ${command.skip}`);
          continue;
        }
        const words = command.argv.map((w) => (w.startsWith('/') ? hostPath(stage, w) : w));
        const started = Date.now();
        await runSh(words.join(' '), hostPath(stage, stage.workdir), env, options.runTimeoutMs);
        options.note(`line ${step.line}: \`${command.argv.join(' ')}\` took ${((Date.now() - started) / 1000).toFixed(1)} s`);
      }
      return;
    }
    case 'user':
      stage.user = expand(step.user, vars());
      options.note(`line ${step.line}: USER ${stage.user} recorded; the replay runs as the test's user`);
      return;
    case 'entrypoint':
      stage.entrypoint = step.argv;
      return;
    case 'cmd':
      stage.cmd = step.argv;
      return;
    case 'healthcheck':
      stage.healthcheck = step.argv;
      return;
    case 'metadata':
      return;
  }
}

function copy(step: Extract<Step, { kind: 'copy' }>, stage: ReplayedStage, vars: Record<string, string>, done: ReplayedStage[], included: (path: string) => boolean, options: ReplayOptions): void {
  const what = `COPY ${step.from ? `--from=${step.from} ` : ''}${step.sources.join(' ')} ${step.dest}`;
  const fromStage = step.from === undefined ? undefined : done.find((s) => s.name === step.from) ?? done[Number(step.from)];
  if (step.from !== undefined && !fromStage) throw new CannotFollow(step.line, what, `--from=${step.from} names no earlier stage`);
  if (step.chown) options.note(`line ${step.line}: --chown=${step.chown} skipped (ownership needs root)`);
  const dest = expand(step.dest, vars);
  const destIsFolder = dest.endsWith('/') || dest === '.' || step.sources.length > 1;
  const target = hostPath(stage, posix.resolve(stage.workdir, dest));
  for (const raw of step.sources) {
    const source = expand(raw, vars);
    let from: string;
    if (fromStage) from = hostPath(fromStage, source);
    else {
      from = join(options.context, posix.resolve('/', source));
      if (!included(from)) throw new Error(`Dockerfile line ${step.line}: ${what}: ${source} is excluded by .dockerignore`);
    }
    if (!existsSync(from)) throw new Error(`Dockerfile line ${step.line}: ${what}: ${source} not found${fromStage ? ` in stage ${fromStage.name}` : ' in the build context'}`);
    // A folder's contents go into dest; a file goes into dest/ or becomes dest.
    const to = statSync(from).isDirectory() || !destIsFolder ? target : join(target, basename(from));
    cpSync(from, to, { recursive: true, verbatimSymlinks: true, filter: fromStage ? undefined : included });
  }
}
