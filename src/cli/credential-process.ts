import { readFileSync } from 'node:fs';

export interface CredentialProcessOptions {
  task: string;
  role: string;
  url: string;
  token: string;
  ttlSeconds?: number;
}

/**
 * The URL of `path` (e.g. `v1/credentials`) on the broker at `base`, keeping the path a broker
 * behind a reverse proxy is served under: `new URL('/v1/...', 'https://host/prefix')` drops `/prefix`.
 */
export function brokerEndpoint(base: string, path: string): URL {
  const url = new URL(base);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  url.search = '';
  url.hash = '';
  return new URL(path.replace(/^\/+/, ''), url);
}

/**
 * `tasklease aws credential-process`: asks the broker for a task-bound AWS
 * credential and prints it in the shape the AWS CLI and SDKs read from a
 * profile's `credential_process` (Version 1). Nothing secret is written to
 * stderr: failures print the broker's problem code and detail only.
 */
export async function credentialProcess(options: CredentialProcessOptions): Promise<{ stdout?: string; stderr?: string; code: number }> {
  let response: Response;
  try {
    response = await fetch(brokerEndpoint(options.url, 'v1/credentials'), {
      method: 'POST',
      headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ task: options.task, role: options.role, ...(options.ttlSeconds ? { ttl_seconds: options.ttlSeconds } : {}) }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    return { code: 1, stderr: `tasklease: the broker at ${options.url} could not be reached (${(err as Error).name})` };
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, any>;
  if (response.status === 202) return { code: 1, stderr: `tasklease: role ${options.role} needs approval; request ${body.approval?.id} is ${body.approval?.status}` };
  if (response.status !== 201) return { code: 1, stderr: `tasklease: ${body.code ?? response.status}: ${body.detail ?? 'request failed'}` };
  const c = body.credentials ?? {};
  if (c.type !== 'aws') return { code: 1, stderr: `tasklease: role ${options.role} does not issue AWS credentials` };
  return {
    code: 0,
    stdout: JSON.stringify({
      Version: 1,
      AccessKeyId: c.AccessKeyId,
      SecretAccessKey: c.SecretAccessKey,
      SessionToken: c.SessionToken,
      // The lease's end: the SDK calls the process again before the broker revokes.
      Expiration: body.lease.expires_at,
    }),
  };
}

/** The identity token: --token-file, TASKLEASE_TOKEN_FILE (read each time: projected tokens rotate), or TASKLEASE_TOKEN. */
export function readToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const file = tokenFile ?? env.TASKLEASE_TOKEN_FILE;
  if (file) return readFileSync(file, 'utf8').trim();
  return env.TASKLEASE_TOKEN?.trim() || undefined;
}
