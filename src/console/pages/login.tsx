// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { LoginRefusal } from '../oidc.js';
import { Layout, MessagePage } from './layout.js';

/** Dev mode's login: pick a subject of the dev issuer; the principals decide what it may do, as for the API. */
export function DevLoginPage(props: { suggestions: { subject: string; what: string }[]; error?: string }) {
  return (
    <Layout title="Sign in (dev)" dev={true}>
      <h1>Sign in (dev login)</h1>
      <p class="warn">
        Dev mode only. You sign in as a subject of the <code>dev</code> issuer, with no password: what that subject may do comes from the
        principals and roles' approvers, exactly as for an API token of the dev issuer.
      </p>
      {props.error ? (
        <p class="error" role="alert">
          {props.error}
        </p>
      ) : null}
      <form method="post" action="/console/login" class="login">
        <ul class="choices">
          {props.suggestions.map((s) => (
            <li>
              <button type="submit" name="subject" value={s.subject}>
                {s.subject}
              </button>{' '}
              <span class="muted">{s.what}</span>
            </li>
          ))}
        </ul>
        <label>
          Another subject <input name="other" autocomplete="off" maxlength={200} />
        </label>
        <button type="submit" name="subject" value="">
          Sign in
        </button>
      </form>
    </Layout>
  );
}

/** Outside dev mode without console.oidc: nobody can sign in. */
export function NotConfiguredPage() {
  return (
    <MessagePage title="The console needs an identity provider" dev={false}>
      <p>
        The console signs people in through your organisation's OpenID Connect provider, configured as <code>console.oidc</code> (see
        docs/console.md). This broker has none, so nobody can sign in. The API and the CLI work as usual.
      </p>
    </MessagePage>
  );
}

const REFUSALS: Record<LoginRefusal, string> = {
  no_login: 'This sign-in is unknown, already used or too old (10 minutes). Sign in again from the start.',
  wrong_state: 'This answer from the identity provider does not belong to the sign-in this browser started. Sign in again from the start.',
  access_denied: 'The identity provider did not let you sign in (access denied).',
  provider_error: 'The identity provider answered with an error instead of signing you in.',
  invalid_token_response: 'The identity provider did not confirm who you are (the code was refused or the ID token did not verify).',
};

/** A callback that signs nobody in: a fixed sentence per reason, never text from the request. */
export function LoginRefusedPage(props: { reason: LoginRefusal }) {
  return (
    <MessagePage title="Sign-in failed" dev={false}>
      <p class="error" role="alert">
        {REFUSALS[props.reason]}
      </p>
      <p>
        <a href="/console/login">Sign in again</a>
      </p>
    </MessagePage>
  );
}

/** A person the provider knows, but who is no admin, orchestrator, approver or agent owner here. */
export function NotPrincipalPage(props: { actor: string }) {
  return (
    <MessagePage title="Not allowed" dev={false}>
      <p class="error" role="alert">
        You signed in as <code>{props.actor}</code>, which is not an admin, an orchestrator or an approver of any role of this broker, nor an
        owner of any agent: the console has nothing for you. Ask its operators to add you to <code>principals</code>, to a role's{' '}
        <code>approvers</code> or to an agent's <code>owner.principals</code>.
      </p>
    </MessagePage>
  );
}

/** Too many sign-ins: from this client (429), or under way at once across the broker (503). Retry-After says when. */
export function LoginBusyPage(props: { why: 'client' | 'logins'; dev: boolean }) {
  return (
    <MessagePage title="Too many sign-ins" dev={props.dev}>
      <p class="error" role="alert">
        {props.why === 'client'
          ? 'Too many sign-ins have come from your address in the last minute. Wait a minute, then sign in again.'
          : 'Too many sign-ins are under way at once. Wait a minute, then sign in again.'}
      </p>
    </MessagePage>
  );
}

export function ProviderUnavailablePage() {
  return (
    <MessagePage title="Identity provider unavailable" dev={false}>
      <p class="error" role="alert">
        The console could not reach the identity provider. Try again in a moment; the broker's logs say more.
      </p>
    </MessagePage>
  );
}

/**
 * After logout with OIDC login: the console's session is gone. `returned`: the browser comes back from the
 * provider's logout (the person may have chosen there to stay signed in); otherwise the provider was not asked.
 */
export function SignedOutPage(props: { returned?: boolean }) {
  return (
    <MessagePage title="Signed out" dev={false}>
      {props.returned ? (
        <p>You are signed out of the console. If you also signed out at your identity provider, signing in again asks for your password.</p>
      ) : (
        <p>
          You are signed out of the console. You may still be signed in at your identity provider, so signing in again may not ask for your
          password.
        </p>
      )}
      <p>
        <a href="/console/login">Sign in again</a>
      </p>
    </MessagePage>
  );
}

/**
 * After logout, on the way to the provider's end_session_endpoint. The route sends it with a `Refresh` header
 * rather than a 303: a redirect answering the logout form is the form's own navigation, which the console's
 * CSP (`form-action 'self'`) blocks for another origin; a refresh is a new navigation. The link is for a browser that ignores it.
 */
export function ProviderLogoutPage(props: { url: string }) {
  return (
    <MessagePage title="Signing out" dev={false}>
      <p>You are signed out of the console. Your browser now goes to your identity provider to end your session there too.</p>
      <p>
        <a href={props.url}>Continue to your identity provider</a>
      </p>
    </MessagePage>
  );
}
