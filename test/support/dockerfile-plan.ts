// A Dockerfile read into the steps test/support/dockerfile-replay.ts can replay
// without a container engine. It keeps one rule: every instruction, flag and
// RUN command is either understood or refused here, before anything runs, so a
// Dockerfile change the replay cannot follow fails CI instead of being ignored
// (test/deploy/image.test.ts, "refuses what it cannot follow").
import { DockerfileParser, type Arg, type Env, type From, type Instruction, type ModifiableInstruction } from 'dockerfile-ast';

/** One command of a RUN step: run with sh in the stage's folder, or skipped with the reason. */
export interface RunCommand {
  argv: string[];
  skip?: string;
}

export type Step =
  | { kind: 'arg'; line: number; name: string; value: string | undefined }
  | { kind: 'workdir'; line: number; path: string }
  | { kind: 'env'; line: number; vars: Array<[string, string]> }
  | { kind: 'copy'; line: number; from: string | undefined; sources: string[]; dest: string; chown: string | undefined }
  | { kind: 'run'; line: number; commands: RunCommand[] }
  | { kind: 'user'; line: number; user: string }
  | { kind: 'entrypoint' | 'cmd'; line: number; argv: string[] }
  | { kind: 'healthcheck'; line: number; argv: string[] | null }
  | { kind: 'metadata'; line: number; text: string };

export interface StagePlan {
  name: string;
  /** A node image (its files are the host's node and npm), or an earlier stage. */
  base: { image: string } | { stage: string };
  steps: Step[];
}

export interface DockerfilePlan {
  /** ARGs declared before the first FROM, with their defaults (no --build-arg). */
  globalArgs: Record<string, string>;
  stages: StagePlan[];
}

export class CannotFollow extends Error {
  constructor(line: number, what: string, why: string) {
    super(`Dockerfile line ${line}: the replay cannot follow \`${what.replace(/\s+/g, ' ').slice(0, 120)}\`: ${why}. Teach test/support/dockerfile-plan.ts, or keep the Dockerfile to what it replays.`);
  }
}

/** Commands a RUN may use, all run with sh in the stage's folder (absolute paths mapped into it). */
const RUN_IN_FOLDER = new Set(['npm', 'node', 'test', 'mkdir', 'chmod']);
/** Commands that change users or ownership: need root and the image's OS, and change no file the broker reads. */
const NEEDS_ROOT = new Set(['groupadd', 'useradd', 'chown']);
/** Words without shell syntax (no quotes, variables, redirects, pipes or `;`), so splitting on && is exact. */
const PLAIN_WORD = /^[\w@%+=:,./-]+$/;
/** Instructions that record something about the image and change no file. */
const METADATA = new Set(['EXPOSE', 'LABEL', 'STOPSIGNAL']);
const HEALTHCHECK_FLAGS = new Set(['interval', 'timeout', 'start-period', 'start-interval', 'retries']);

const lineOf = (instruction: Instruction) => instruction.getRange().start.line + 1;

/** `$NAME` and `${NAME}` from `vars`; an unset name expands to nothing, as Docker does. */
export function expand(text: string, vars: Record<string, string>): string {
  return text.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, braced: string | undefined, bare: string | undefined) => vars[(braced ?? bare)!] ?? '');
}

function flagsOf(instruction: Instruction, allowed: ReadonlySet<string>): Record<string, string> {
  const flags: Record<string, string> = {};
  for (const flag of (instruction as ModifiableInstruction).getFlags?.() ?? []) {
    if (!allowed.has(flag.getName())) throw new CannotFollow(lineOf(instruction), instruction.getInstruction() + ' ' + flag.toString(), `the flag --${flag.getName()}`);
    flags[flag.getName()] = flag.getValue() ?? '';
  }
  return flags;
}

/** An exec-form JSON array, or the shell form run by /bin/sh -c, as Docker reads it. */
function commandOf(text: string): string[] {
  if (text.trimStart().startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (Array.isArray(parsed) && parsed.every((p) => typeof p === 'string')) return parsed;
    } catch {
      // not JSON: Docker runs it in the shell form
    }
  }
  return ['/bin/sh', '-c', text];
}

function runCommands(instruction: Instruction, text: string): RunCommand[] {
  const line = lineOf(instruction);
  const exec = commandOf(text);
  const parts = exec[0] === '/bin/sh' && exec[1] === '-c' ? exec[2]!.split('&&').map((p) => p.trim().split(/\s+/).filter((w) => w !== '')) : [exec];
  return parts.map((argv) => {
    if (argv.length === 0 || !argv.every((w) => PLAIN_WORD.test(w))) throw new CannotFollow(line, `RUN ${text}`, 'a RUN replays only plain commands joined by &&');
    const [program] = argv as [string];
    if (NEEDS_ROOT.has(program)) return { argv, skip: `${program} needs root and the image's OS; it changes no file the broker reads` };
    if (program === 'npm' && argv[1] === 'cache') return { argv, skip: 'the replay shares the host npm cache, which it must not clean' };
    if (!RUN_IN_FOLDER.has(program)) throw new CannotFollow(line, `RUN ${text}`, `the command ${program}`);
    return { argv };
  });
}

/** Reads a Dockerfile into stages of replayable steps, refusing anything else. */
export function planDockerfile(text: string): DockerfilePlan {
  const dockerfile = DockerfileParser.parse(text);
  const globalArgs: Record<string, string> = {};
  const stages: StagePlan[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword();
    const line = lineOf(instruction);
    const content = instruction.getArgumentsContent() ?? '';
    const stage = stages.at(-1);
    if (keyword === 'FROM') {
      flagsOf(instruction, new Set());
      const from = instruction as From;
      const image = expand(from.getArguments()[0]?.getValue() ?? '', globalArgs);
      const name = from.getBuildStage() ?? String(stages.length);
      const earlier = stages.find((s) => s.name === image);
      if (earlier) stages.push({ name, base: { stage: earlier.name }, steps: [] });
      else if (/^(docker\.io\/(library\/)?)?node(:|@|$)/.test(image)) stages.push({ name, base: { image }, steps: [] });
      else throw new CannotFollow(line, `FROM ${content}`, 'the base is neither a node image nor an earlier stage');
      continue;
    }
    if (keyword === 'ARG') {
      const property = (instruction as Arg).getProperty();
      if (!property) throw new CannotFollow(line, `ARG ${content}`, 'an ARG without a name');
      const value = property.getValue() ?? undefined;
      if (!stage) globalArgs[property.getName()] = value ?? '';
      else stage.steps.push({ kind: 'arg', line, name: property.getName(), value: value ?? globalArgs[property.getName()] });
      continue;
    }
    if (!stage) throw new CannotFollow(line, `${keyword} ${content}`, 'only ARG may come before the first FROM');
    switch (keyword) {
      case 'WORKDIR':
        stage.steps.push({ kind: 'workdir', line, path: content.trim() });
        break;
      case 'ENV':
        stage.steps.push({ kind: 'env', line, vars: (instruction as Env).getProperties().map((p) => [p.getName(), p.getValue() ?? '']) });
        break;
      case 'COPY': {
        const flags = flagsOf(instruction, new Set(['from', 'chown']));
        const args = (instruction as ModifiableInstruction).getArguments().map((a) => a.getValue());
        if (args.length < 2 || content.trimStart().startsWith('[')) throw new CannotFollow(line, `COPY ${content}`, 'COPY replays the form `COPY [--from=stage] source... dest`');
        if (args.some((a) => /[*?[]/.test(a))) throw new CannotFollow(line, `COPY ${content}`, 'wildcards in COPY');
        if (flags.from !== undefined && !stages.slice(0, -1).some((s, i) => s.name === flags.from || String(i) === flags.from)) {
          throw new CannotFollow(line, `COPY ${content}`, `--from=${flags.from} names no earlier stage`);
        }
        stage.steps.push({ kind: 'copy', line, from: flags.from, sources: args.slice(0, -1), dest: args.at(-1)!, chown: flags.chown });
        break;
      }
      case 'RUN':
        flagsOf(instruction, new Set());
        stage.steps.push({ kind: 'run', line, commands: runCommands(instruction, content) });
        break;
      case 'USER':
        stage.steps.push({ kind: 'user', line, user: content.trim() });
        break;
      case 'ENTRYPOINT':
      case 'CMD':
        stage.steps.push({ kind: keyword === 'CMD' ? 'cmd' : 'entrypoint', line, argv: commandOf(content) });
        break;
      case 'HEALTHCHECK': {
        flagsOf(instruction, HEALTHCHECK_FLAGS);
        const command = /^\s*CMD\s+([\s\S]*)$/.exec(content);
        if (!command && content.trim() !== 'NONE') throw new CannotFollow(line, `HEALTHCHECK ${content}`, 'HEALTHCHECK is CMD ... or NONE');
        stage.steps.push({ kind: 'healthcheck', line, argv: command ? commandOf(command[1]!) : null });
        break;
      }
      default:
        if (!METADATA.has(keyword)) throw new CannotFollow(line, `${keyword} ${content}`, `the instruction ${keyword}`);
        stage.steps.push({ kind: 'metadata', line, text: `${keyword} ${content}` });
    }
  }
  if (stages.length === 0) throw new CannotFollow(1, '', 'no FROM');
  return { globalArgs, stages };
}
