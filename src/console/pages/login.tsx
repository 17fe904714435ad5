// The pragmas make every loader (tsx outside this repository, vitest, tsc) compile JSX for hono/jsx.
/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
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

/** Outside dev mode, until OIDC login is built. */
export function NotConfiguredPage() {
  return (
    <MessagePage title="The console needs an identity provider" dev={false}>
      <p>
        The console signs people in through your organisation's OpenID Connect provider, configured as <code>console.oidc</code>. That login
        is not built yet in this version, so the console is available only in dev mode (<code>npm start</code> without a config file). The API
        and the CLI work as usual.
      </p>
    </MessagePage>
  );
}
