import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { TaskleaseError } from './errors.js';

/** Where an identity token comes from; asked before every request. */
export interface TokenSource {
  /** What it reads, for messages (never the token). */
  readonly description: string;
  token(): Promise<string>;
}

/** A token as `createClient` takes it: the token itself, a function, or a source. */
export type TokenInput = string | (() => string | Promise<string>) | TokenSource;

/** Where a pod's projected service-account token is mounted by default. */
export const KUBERNETES_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

const noToken = (detail: string) => new TaskleaseError('client_no_token', 0, detail);

export function toTokenSource(input: TokenInput): TokenSource {
  if (typeof input === 'string') return { description: 'a token given in code', token: async () => input };
  if (typeof input === 'function') return { description: 'a token function', token: async () => input() };
  return input;
}

/**
 * The token in a file, read again for every request: Kubernetes rotates
 * projected tokens in place, so a token read once goes stale.
 */
export function tokenFromFile(path: string): TokenSource {
  return {
    description: `the token file ${path}`,
    async token() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        throw new TaskleaseError('client_no_token', 0, `cannot read the token file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, null, { cause: err });
      }
      const token = text.trim();
      if (!token) throw noToken(`the token file ${path} is empty`);
      return token;
    },
  };
}

/** The token in an environment variable (TASKLEASE_TOKEN by default). */
export function tokenFromEnv(name = 'TASKLEASE_TOKEN', env: NodeJS.ProcessEnv = process.env): TokenSource {
  return {
    description: `the environment variable ${name}`,
    async token() {
      const token = env[name]?.trim();
      if (!token) throw noToken(`${name} is not set`);
      return token;
    },
  };
}

/** The pod's projected service-account token at the default path (re-read on every request). */
export function tokenFromKubernetes(path = KUBERNETES_TOKEN_PATH): TokenSource {
  return { ...tokenFromFile(path), description: `the Kubernetes service-account token at ${path}` };
}

/** Seconds since the epoch at which a JWT expires, or undefined (the token is not checked, only its `exp` read). */
function jwtExpiry(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp : undefined;
  } catch {
    return undefined;
  }
}

export interface GitHubActionsOptions {
  /** The audience the broker accepts (its issuer entry's `audiences`; by default its public URL). */
  audience: string;
  env?: NodeJS.ProcessEnv;
  fetch?: typeof globalThis.fetch;
}

/**
 * A GitHub Actions OIDC token for the broker's audience, requested from the
 * runner (the job needs `permissions: id-token: write`) and kept until a
 * minute before it expires.
 */
export function tokenFromGitHubActions({ audience, env = process.env, fetch = globalThis.fetch }: GitHubActionsOptions): TokenSource {
  let cached: { token: string; exp: number } | undefined;
  return {
    description: 'the GitHub Actions OIDC token',
    async token() {
      if (cached && cached.exp - 60 > Date.now() / 1000) return cached.token;
      const url = env.ACTIONS_ID_TOKEN_REQUEST_URL;
      const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
      if (!url || !bearer) throw noToken('ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set (does the job have `id-token: write`?)');
      const request = new URL(url);
      request.searchParams.set('audience', audience);
      const res = await fetch(request, { headers: { authorization: `bearer ${bearer}`, accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new TaskleaseError('client_no_token', 0, `the GitHub Actions OIDC request answered ${res.status}`);
      const value = ((await res.json()) as { value?: unknown }).value;
      if (typeof value !== 'string' || !value) throw noToken('the GitHub Actions OIDC answer has no token');
      cached = { token: value, exp: jwtExpiry(value) ?? Date.now() / 1000 + 300 };
      return value;
    },
  };
}

export interface DefaultTokenOptions {
  /** An explicit token file (`--token-file`): first in the chain when given. */
  tokenFile?: string;
  /** The broker's audience, for GitHub Actions (required there). */
  audience?: string;
  env?: NodeJS.ProcessEnv;
  kubernetesTokenPath?: string;
  fetch?: typeof globalThis.fetch;
}

/**
 * The identity chain of `tasklease run` (issue 15 section 1), decided again
 * for every request: the token file if given, TASKLEASE_TOKEN, the
 * Kubernetes projected token when its file exists, then GitHub Actions OIDC.
 */
export function defaultTokenSource(options: DefaultTokenOptions = {}): TokenSource {
  const env = options.env ?? process.env;
  const kubernetesPath = options.kubernetesTokenPath ?? KUBERNETES_TOKEN_PATH;
  const github = options.audience ? tokenFromGitHubActions({ audience: options.audience, env, fetch: options.fetch }) : undefined;
  const pick = (): TokenSource => {
    if (options.tokenFile) return tokenFromFile(options.tokenFile);
    if (env.TASKLEASE_TOKEN?.trim()) return tokenFromEnv('TASKLEASE_TOKEN', env);
    if (existsSync(kubernetesPath)) return tokenFromKubernetes(kubernetesPath);
    if (env.ACTIONS_ID_TOKEN_REQUEST_URL && env.ACTIONS_ID_TOKEN_REQUEST_TOKEN) {
      if (github) return github;
      throw noToken('GitHub Actions OIDC needs the broker audience (the `audience` option)');
    }
    throw noToken(`no identity token: give a token file, set TASKLEASE_TOKEN, mount ${kubernetesPath} or run in GitHub Actions with id-token: write`);
  };
  return { description: 'the default token chain', token: async () => pick().token() };
}
