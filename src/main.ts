import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolveConfig } from './cli/context.js';
import { signDevToken } from './config/dev.js';
import { ConfigError } from './config/load.js';

// Commands load what they need when they run, so `dev token` starts fast.
const database = async (config: Awaited<ReturnType<typeof resolveConfig>>) =>
  (await import('./cli/context.js')).openConfiguredDatabase(config);

const USAGE = `usage: tasklease <command> [--config FILE]

commands:
  serve               migrate, then serve the API and run the sweeper (default)
  migrate             apply database migrations and exit
  sweep               run one sweeper pass and exit
  dev token <subject> print a dev identity token (dev mode only)
  audit verify [--checkpoint FILE [--jwks FILE|URL]]
                      check the audit hash chain and its head (and that it still holds
                      a signed checkpoint); exit 1 at the first broken link
  audit checkpoint [--out FILE]
                      print (or write) a checkpoint of the chain's head, signed by the broker's key
  aws credential-process --task T --role R [--url URL] [--token-file F]
                      print a task-bound AWS credential for a profile's credential_process

The config file comes from --config or TASKLEASE_CONFIG; without one, tasklease
runs in dev mode on embedded PGlite under ./.tasklease (or on DATABASE_URL).`;

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      ttl: { type: 'string' },
      task: { type: 'string' },
      role: { type: 'string' },
      url: { type: 'string' },
      'token-file': { type: 'string' },
      checkpoint: { type: 'string' },
      jwks: { type: 'string' },
      out: { type: 'string' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [command = 'serve', sub, arg] = positionals;
  if (command === 'aws') {
    if (sub !== 'credential-process') return usage();
    const { credentialProcess, readToken } = await import('./cli/credential-process.js');
    const token = readToken(values['token-file'], process.env);
    const url = values.url ?? process.env.TASKLEASE_URL;
    if (!values.task || !values.role || !url || !token) {
      console.error('usage: tasklease aws credential-process --task T --role R [--url URL | TASKLEASE_URL] [--token-file F | TASKLEASE_TOKEN_FILE | TASKLEASE_TOKEN]');
      return 2;
    }
    const out = await credentialProcess({ task: values.task, role: values.role, url, token, ttlSeconds: values.ttl ? Number(values.ttl) : undefined });
    if (out.stdout) process.stdout.write(`${out.stdout}\n`);
    if (out.stderr) console.error(out.stderr);
    return out.code;
  }
  const config = await resolveConfig({ config: values.config, env: process.env });

  switch (command) {
    case 'serve':
      await (await import('./cli/serve.js')).runServe(config, version);
      return -1;
    case 'migrate': {
      const db = await database(config);
      await (await import('./db/migrate.js')).runMigrations(db);
      await db.close();
      console.error(`migrations applied (${db.kind})`);
      return 0;
    }
    case 'sweep': {
      const { runSweepOnce } = await import('./cli/sweep.js');
      const result = await runSweepOnce(config, version);
      console.error(JSON.stringify(result));
      return 0;
    }
    case 'dev': {
      if (sub !== 'token' || !arg) break;
      if (!config.dev) {
        console.error('tasklease: dev tokens exist only in dev mode (no config file)');
        return 2;
      }
      console.log(await signDevToken(config.data_dir, arg, values.ttl ? Number(values.ttl) : undefined));
      return 0;
    }
    case 'audit': {
      const audit = await import('./cli/audit.js');
      let out;
      if (sub === 'verify') out = await audit.runAuditVerify(config, { checkpoint: values.checkpoint, jwks: values.jwks });
      else if (sub === 'checkpoint') out = await audit.runAuditCheckpoint(config, { out: values.out });
      else break;
      if (out.stdout !== undefined) console.log(out.stdout);
      if (out.stderr !== undefined) console.error(out.stderr);
      return out.code;
    }
  }
  return usage();
}

function usage(): number {
  console.error(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) console.error(`tasklease: invalid configuration\n${err.message}`);
    else console.error(`tasklease: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  },
);
