import { hostname } from 'node:os';
import { devConfig } from '../config/dev.js';
import { loadConfigFile, parseConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Database } from '../db/client.js';

export interface CliOptions {
  config?: string;
  env: NodeJS.ProcessEnv;
}

/** The config file named by --config or TASKLEASE_CONFIG; without one, dev mode. */
export async function resolveConfig({ config, env }: CliOptions): Promise<Config> {
  const file = config ?? env.TASKLEASE_CONFIG;
  if (file) return loadConfigFile(file, env);
  const dataDir = env.TASKLEASE_DATA_DIR ?? './.tasklease';
  return parseConfig(await devConfig(dataDir), 'dev mode', env);
}

export async function openConfiguredDatabase(config: Config): Promise<Database> {
  const { openDatabase } = await import('../db/client.js');
  return openDatabase({ url: config.database_url, dataDir: config.data_dir });
}

export const instanceId = () => `${hostname()}:${process.pid}`;
