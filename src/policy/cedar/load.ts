import type { Config } from '../../config/schema.js';
import { createPolicy, type Policy } from '../decide.js';
import { readPolicyFiles } from './files.js';

/**
 * The broker's policy from its config: the YAML rules compiled to Cedar and
 * the operator's `.cedar` files (absolute paths: config/load.ts resolves them
 * against the config file), validated against the schema. Throws
 * PolicyLoadError, naming each problem's file and line, when they do not load.
 */
export function policyFromConfig(config: Config): Policy {
  return createPolicy(config.roles, config.policy, {
    requireRegistration: config.agents.require_registration,
    cedar: readPolicyFiles(config.policy.cedar.files, process.cwd()),
    backendType: (name) => config.backends[name]?.type ?? 'jwt',
  });
}
