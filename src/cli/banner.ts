import type { Config } from '../config/schema.js';

/** What dev mode prints at start-up: a loud warning and the whole flow as curl commands. */
export function devBanner(config: Config, url: string): string {
  const tl = 'npx tasklease';
  return `
  ┌──────────────────────────────────────────────────────────────────────┐
  │  tasklease is running in DEV MODE. NOT FOR PRODUCTION.               │
  │  A built-in dev issuer signs identity tokens for any subject, and    │
  │  its key lives in ${config.data_dir.padEnd(51)}│
  └──────────────────────────────────────────────────────────────────────┘

  Try the whole flow (in another shell, from this directory):

  ORCH=$(${tl} dev token orchestrator); AGENT=$(${tl} dev token agent-1)
  TASK=$(curl -s ${url}/v1/tasks -H "authorization: Bearer $ORCH" -H 'content-type: application/json' \\
    -d '{"agent":{"subject":"agent-1"},"roles":["demo"],"ttl_seconds":600}' | tee /dev/stderr | sed -E 's/.*"task":\\{"id":"([^"]+)".*/\\1/')
  CRED=$(curl -s ${url}/v1/credentials -H "authorization: Bearer $AGENT" -H 'content-type: application/json' \\
    -d "{\\"task\\":\\"$TASK\\",\\"role\\":\\"demo\\"}" | tee /dev/stderr | sed -E 's/.*"token":"([^"]+)".*/\\1/')
  curl -s ${url}/v1/introspect -H "authorization: Bearer $AGENT" --data-urlencode "token=$CRED"
  curl -s ${url}/v1/tasks/$TASK/complete -H "authorization: Bearer $ORCH" -H 'content-type: application/json' -d '{"outcome":"success"}'
  sleep 1; curl -s ${url}/v1/introspect -H "authorization: Bearer $AGENT" --data-urlencode "token=$CRED"
  curl -s ${url}/v1/tasks/$TASK -H "authorization: Bearer $ORCH"

  Stop agent-1 on every replica at once (its leases are revoked, its requests refused):

  export TASKLEASE_URL=${url} TASKLEASE_TOKEN=$(${tl} dev token admin)
  ${tl} agents suspend agent-1 --reason "trying it"; ${tl} agents resume agent-1 --reason "done"

`;
}
