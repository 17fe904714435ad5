/**
 * tasklease/client: the TypeScript SDK for agents and orchestrators
 * (docs/sdk.md). It imports nothing of the broker (no hono, drizzle,
 * database driver or AWS SDK): test/client/isolation.test.ts loads it in a
 * fresh process and checks.
 */
export { ApprovalPendingError, createClient, type Approval, type Client, type ClientOptions } from './client.js';
export { TaskleaseError, unwrap } from './errors.js';
export { LeaseHandle, type Credentials, type Lease, type LeaseHandleOptions } from './lease.js';
export type { components, paths } from './openapi.js';
export type { RetryOptions } from './retry.js';
export type { OpenTask, Task } from './tasks.js';
export {
  defaultTokenSource,
  KUBERNETES_TOKEN_PATH,
  tokenFromEnv,
  tokenFromFile,
  tokenFromGitHubActions,
  tokenFromKubernetes,
  type DefaultTokenOptions,
  type GitHubActionsOptions,
  type TokenInput,
  type TokenSource,
} from './tokens.js';
