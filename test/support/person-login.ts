import * as oauth from 'oauth4webapi';

/**
 * A person signs in at an OpenID provider (oidc-provider's dev interactions: any login, any password, then
 * consent) through a relying party written with oauth4webapi: authorization code with PKCE, then the code
 * grant. The forms are followed as a browser would (cookies kept, hidden fields sent back). Returns the ID token.
 */
export async function personIdToken(provider: string, client: { client_id: string; client_secret: string; redirect_uri: string }, login: string): Promise<string> {
  const opts = { [oauth.allowInsecureRequests]: true };
  const issuer = new URL(provider);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, opts));
  const rp: oauth.Client = { client_id: client.client_id };
  const verifier = oauth.generateRandomCodeVerifier();
  const authorize = new URL(as.authorization_endpoint!);
  for (const [k, v] of Object.entries({ client_id: client.client_id, redirect_uri: client.redirect_uri, response_type: 'code', scope: 'openid', code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' })) {
    authorize.searchParams.set(k, v);
  }

  const cookies = new Map<string, string>();
  const send = async (url: string, body?: URLSearchParams) => {
    const res = await fetch(url, { method: body ? 'POST' : 'GET', body, redirect: 'manual', headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    return res;
  };
  let res = await send(authorize.href);
  for (let step = 0; step < 10; step++) {
    const location = res.headers.get('location');
    if (location?.startsWith(client.redirect_uri)) {
      const params = oauth.validateAuthResponse(as, rp, new URL(location));
      const grant = await oauth.authorizationCodeGrantRequest(as, rp, oauth.ClientSecretBasic(client.client_secret), params, client.redirect_uri, verifier, opts);
      const tokens = await oauth.processAuthorizationCodeResponse(as, rp, grant);
      return tokens.id_token!;
    }
    if (location) {
      res = await send(new URL(location, provider).href);
      continue;
    }
    // A page with a form: the login (name and password) or the consent; its hidden fields go back as they are.
    const page = await res.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1];
    if (!action) throw new Error(`the provider answered ${res.status} without a form to follow`);
    const form = new URLSearchParams([...page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!] as [string, string]));
    if (page.includes('name="login"')) form.set('login', login), form.set('password', 'any');
    res = await send(new URL(action, provider).href, form);
  }
  throw new Error('the sign-in did not reach the redirect URI');
}
