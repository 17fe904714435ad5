import { describe, expect, it } from 'vitest';
import { toBackendError, type VaultOperation } from '../../src/backends/vault-errors.js';

/** An error shaped as node-vault rejects: Vault's first error as the message, the status on the response. */
const answer = (status: number | undefined, message = '') => Object.assign(new Error(message), status === undefined ? {} : { response: { statusCode: status } });

// Each row: what Vault (or OpenBao) answers, and whether the broker may try again (docs/vault.md has the table).
const CASES: [VaultOperation, number | undefined, string, string, boolean][] = [
  ['revoke', 400, 'failed to revoke entry: resp: (*logical.Response)(nil) err: dial tcp 10.0.0.5:5432: connect: connection refused', 'vault_failed', true],
  ['revoke', 400, 'failed to read lease entry database/creds/ro/abc: context deadline exceeded', 'vault_failed', true],
  ['revoke', 400, 'token not found', 'vault_failed', true],
  ['revoke', 400, 'lease_id must be specified', 'vault_refused', false],
  ['revoke', 400, '1 error occurred:\n\t* missing accessor\n\n', 'vault_refused', false],
  ['revoke', 400, 'failed to parse JSON input: unexpected EOF', 'vault_refused', false],
  ['revoke', 403, '1 error occurred:\n\t* permission denied\n\n', 'vault_permission_denied', false],
  ['revoke', 404, 'no handler for route "sys/leases/revoke". route entry not found.', 'vault_path_unsupported', false],
  ['revoke', 405, '1 error occurred:\n\t* unsupported operation\n\n', 'vault_path_unsupported', false],
  ['revoke', 202, 'Status 202', 'vault_unconfirmed', true],
  ['revoke', 412, 'required index state not present', 'vault_unavailable', true],
  ['revoke', 429, 'request path "sys/leases/revoke": rate limit quota exceeded', 'vault_unavailable', true],
  ['revoke', 500, '1 error occurred:\n\t* failed to revoke token: storage unavailable\n\n', 'vault_unavailable', true],
  ['revoke', 503, 'Vault is sealed', 'vault_unavailable', true],
  ['revoke', undefined, 'connect ECONNREFUSED 127.0.0.1:8200', 'vault_unavailable', true],
  ['renew', 400, 'failed to renew entry: resp: (*logical.Response)(nil) err: connection refused', 'vault_failed', true],
  ['renew', 400, 'lease not found', 'vault_refused', false],
  ['renew', 400, 'lease is not renewable', 'vault_refused', false],
  ['renew', 400, 'past the max TTL, cannot renew', 'vault_refused', false],
  ['renew', 400, 'invalid accessor', 'vault_refused', false],
  ['mint', 400, 'unknown role deploy', 'vault_refused', false],
  ['mint', 400, "token policies ([\"admin\"]) must be subset of the role's allowed policies ([\"deploy\"])", 'vault_refused', false],
  ['mint', 400, 'child policies must be subset of parent', 'vault_refused', false],
  ['mint', 500, '1 error occurred:\n\t* failed to connect to the database\n\n', 'vault_unavailable', true],
];

describe('Vault answers, classified', () => {
  it.each(CASES)('%s answered %s %j -> %s (retryable: %s)', (op, status, message, code, retryable) => {
    const err = toBackendError(answer(status, message), op, 'some/path', 'update');
    expect(err).toMatchObject({ code, retryable });
  });

  it('names the missing capability and path on a 403', () => {
    expect(toBackendError(answer(403, 'permission denied'), 'revoke', 'auth/token/revoke-accessor', 'update').message).toBe(
      "the broker's Vault token lacks 'update' on auth/token/revoke-accessor",
    );
  });
});
