import * as oauth from 'oauth4webapi';
import { beforeAll } from 'vitest';
import type { TestBroker } from './broker.js';

export const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/**
 * An oauth4webapi client of the test broker: its fetch is the broker's app (in process, under the broker's
 * https public URL), and the authorization server is discovered from the metadata before the tests run.
 */
export function useOAuthClient(broker: () => TestBroker) {
  const fetchApp = ((url: string, init: RequestInit) => broker().broker.app.request(url, init)) as never;
  const ctx = { opts: { [oauth.customFetch]: fetchApp }, client: { client_id: 'agent' } as oauth.Client, as: undefined as unknown as oauth.AuthorizationServer };
  beforeAll(async () => {
    const issuer = new URL(broker().config.public_url);
    ctx.as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...ctx.opts }));
  });
  return ctx;
}
