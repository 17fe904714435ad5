import { createClient } from '../client/client.js';
import { defaultTokenSource } from '../client/tokens.js';
import { loadGatewayConfig } from './config.js';
import { createGatewayLeases } from './leases.js';
import { createGateway } from './proxy.js';

export interface GatewayOptions {
  routes: string;
  url?: string;
  tokenFile?: string;
  task?: string;
  shared?: boolean;
}

/**
 * `tasklease gateway`: the gateway as a process of its own until SIGINT or
 * SIGTERM, then it stops taking calls, finishes those in flight, sends its
 * last call records and releases its leases. A sidecar (the default) asks
 * with its own identity (the same sources as `tasklease run`); `--shared`
 * asks with each caller's (Proxy-Authorization).
 */
export async function runGateway(options: GatewayOptions, deps: { env: NodeJS.ProcessEnv; stderr: (text: string) => void; signals?: NodeJS.EventEmitter }): Promise<number> {
  const url = options.url ?? deps.env.TASKLEASE_URL;
  if (!url) {
    deps.stderr('tasklease: no broker URL: pass --url or set TASKLEASE_URL\n');
    return 2;
  }
  let config;
  try {
    config = loadGatewayConfig(options.routes);
  } catch (err) {
    deps.stderr(`tasklease: ${err instanceof Error ? err.message : 'the routes could not be read'}\n`);
    return 2;
  }
  const log = (line: Record<string, unknown>, msg: string) => deps.stderr(`${JSON.stringify({ ...line, msg, component: 'gateway', time: new Date().toISOString() })}\n`);
  const leases = createGatewayLeases({ url, log });
  const task = options.task ?? deps.env.TASKLEASE_TASK;
  const sidecar = options.shared
    ? undefined
    : { asker: leases.self(createClient({ url, token: defaultTokenSource({ tokenFile: options.tokenFile, env: deps.env }) })), ...(task ? { task } : {}) };
  const gateway = createGateway({ config, leases, log, ...(sidecar ? { sidecar } : {}) });
  const port = await gateway.listen();
  deps.stderr(`tasklease gateway listening on http://${config.listen?.host ?? '127.0.0.1'}:${port} (${options.shared ? 'shared' : 'sidecar'}; routes ${config.routes.map((r) => r.name).join(', ')})\n`);
  const signals = deps.signals ?? process;
  await new Promise<void>((resolve) => {
    signals.once('SIGINT', resolve);
    signals.once('SIGTERM', resolve);
  });
  await gateway.stop();
  return 0;
}
