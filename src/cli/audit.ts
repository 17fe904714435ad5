import { readFileSync, writeFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { CheckpointRefused, createCheckpoint, verifyCheckpoint, type Checkpoint } from '../audit/checkpoint.js';
import { describeVerification, verifyAuditChain } from '../audit/verify.js';
import { brokerKeyStoreOptions, createSigningKeyStore, readPublishedKeys } from '../backends/jwt-keys.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config/schema.js';
import type { CommandResult } from './command.js';
import { openConfiguredDatabase } from './context.js';

const keysDir = (config: Config) => brokerKeyStoreOptions(config, systemClock).dir;

/**
 * The keys a checkpoint is verified against: a JWKS file or URL the operator
 * names (the broker's /.well-known/jwks.json, or a copy kept beside the
 * checkpoints, since the broker drops retired keys), else the broker's own
 * keys under data_dir/keys, read without creating any.
 */
function checkpointKeys(config: Config, jwks: string | undefined): { keys: JWTVerifyGetKey; source: string } {
  if (jwks === undefined) {
    const dir = keysDir(config);
    return { keys: createLocalJWKSet(readPublishedKeys(dir)), source: `the broker's keys under ${dir}` };
  }
  if (/^https?:\/\//i.test(jwks)) return { keys: createRemoteJWKSet(new URL(jwks)), source: jwks };
  return { keys: createLocalJWKSet(JSON.parse(readFileSync(jwks, 'utf8')) as JSONWebKeySet), source: jwks };
}

const summary = (c: Checkpoint) => `seq ${c.seq}, ${c.count} events, head ${c.hash}, signed ${c.at.toISOString()} by key ${c.kid}`;

/** `tasklease audit verify [--checkpoint FILE [--jwks FILE|URL]]`: exit 0 intact, 1 broken or the checkpoint refused. */
export async function runAuditVerify(config: Config, options: { checkpoint?: string; jwks?: string }): Promise<CommandResult> {
  if (options.jwks !== undefined && options.checkpoint === undefined) return { code: 2, stderr: 'tasklease: --jwks verifies a checkpoint: pass --checkpoint FILE too' };
  let checkpoint: Checkpoint | undefined;
  if (options.checkpoint !== undefined) {
    const { keys, source } = checkpointKeys(config, options.jwks);
    try {
      checkpoint = await verifyCheckpoint(readFileSync(options.checkpoint, 'utf8'), keys, config.public_url, source);
    } catch (err) {
      if (!(err instanceof CheckpointRefused)) throw err;
      return { code: 1, stdout: `audit checkpoint REFUSED (${options.checkpoint}): ${err.message}` };
    }
  }
  const database = await openConfiguredDatabase(config);
  try {
    const result = await verifyAuditChain(database.db, { checkpoint });
    return { code: result.ok ? 0 : 1, stdout: describeVerification(result, checkpoint), stderr: checkpoint && `checkpoint: ${summary(checkpoint)}` };
  } finally {
    await database.close();
  }
}

/** `tasklease audit checkpoint [--out FILE]`: the signed checkpoint (a compact JWT) on stdout or in FILE. */
export async function runAuditCheckpoint(config: Config, options: { out?: string }): Promise<CommandResult> {
  const dir = keysDir(config);
  // A key made here would be one the brokers never published: sign only where their keys are.
  if (readPublishedKeys(dir).keys.length === 0) {
    return { code: 2, stderr: `tasklease: no signing keys under ${dir}: run this where the broker's data_dir is, or ask a broker (GET /v1/audit/checkpoint)` };
  }
  const keys = await createSigningKeyStore(brokerKeyStoreOptions(config, systemClock));
  const database = await openConfiguredDatabase(config);
  try {
    const result = await createCheckpoint({ db: database.db, keys, issuer: config.public_url, clock: systemClock });
    if (!result.ok) return { code: 1, stdout: describeVerification(result) };
    if (options.out !== undefined) writeFileSync(options.out, `${result.token}\n`);
    return { code: 0, stdout: options.out === undefined ? result.token : undefined, stderr: `audit checkpoint: ${summary(result.checkpoint)}` };
  } finally {
    await database.close();
  }
}
