export const PUSH_DELIVERY = 'urn:ietf:rfc:8935';
export const POLL_DELIVERY = 'urn:ietf:rfc:8936';

/**
 * SSF 1.0 transmitter configuration metadata, served at
 * `/.well-known/ssf-configuration`. Streams are configured by the operator
 * (`oauth.resource_servers[].security_events`), not through SSF's stream
 * management API, so no configuration endpoint is listed; every subject a
 * receiver's audiences cover is in its stream (`default_subjects: ALL`). The
 * poll endpoint is protected by HTTP Basic (RFC 7617) with the receiver's
 * client credentials.
 */
export function ssfMetadata(publicUrl: string) {
  const base = publicUrl.replace(/\/$/, '');
  return {
    spec_version: '1_0',
    issuer: publicUrl,
    jwks_uri: `${base}/.well-known/jwks.json`,
    delivery_methods_supported: [PUSH_DELIVERY, POLL_DELIVERY],
    authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:7617' }],
    default_subjects: 'ALL',
    // Not an SSF member (there is no stream configuration endpoint to learn it from): where a poll receiver polls.
    poll_endpoint: `${base}/ssf/poll`,
  };
}
