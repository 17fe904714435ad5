import type { RoleConfig } from '../config/schema.js';
import { DPOP_ALGORITHMS } from './dpop.js';
import { ASSERTION_ALGORITHMS } from './clients.js';
import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE } from './exchange.js';

/**
 * RFC 8414 authorization server metadata, served at
 * `/.well-known/oauth-authorization-server`: what an OAuth client library
 * discovers before it exchanges a token. The broker has no authorization
 * endpoint (agents authenticate with their workload token, not a browser), so
 * `response_types_supported` is empty. The agent's client authentication is
 * its workload token: `none` at the token endpoint (the subject token is the
 * proof), a Bearer at revocation (not a registered method, so not listed:
 * docs/oauth.md). Resource servers introspect as OAuth clients.
 */
export function authorizationServerMetadata(publicUrl: string, jwtRoles: RoleConfig[]) {
  const base = publicUrl.replace(/\/$/, '');
  const scopes = [...new Set(jwtRoles.flatMap((r) => (r.jwt?.scope ?? '').split(' ').filter(Boolean)))].sort();
  return {
    issuer: publicUrl,
    token_endpoint: `${base}/oauth2/token`,
    revocation_endpoint: `${base}/oauth2/revoke`,
    introspection_endpoint: `${base}/oauth2/introspect`,
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    introspection_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
    jwks_uri: `${base}/.well-known/jwks.json`,
    response_types_supported: [] as string[],
    grant_types_supported: [TOKEN_EXCHANGE],
    token_endpoint_auth_methods_supported: ['none'],
    dpop_signing_alg_values_supported: DPOP_ALGORITHMS,
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    // RFC 8693 defines no metadata for these: extension members, as RFC 8414 section 2 allows.
    subject_token_types_supported: [JWT_TOKEN_TYPE],
    issued_token_types_supported: [ACCESS_TOKEN_TYPE],
    service_documentation: 'https://github.com/tasklease/tasklease/blob/main/docs/oauth.md',
  };
}
