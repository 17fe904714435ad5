import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { LOGIN_SECONDS } from './oidc.js';

/**
 * What every console response carries: no script but the console's own
 * files, no inline script or style, never framed, no referrer, never cached.
 */
export const CONSOLE_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  'Cross-Origin-Opener-Policy': 'same-origin',
};

export const consoleHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  for (const [name, value] of Object.entries(CONSOLE_HEADERS)) c.res.headers.set(name, value);
};

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/**
 * The session cookie: Secure with the __Host- prefix (no Domain, Path=/, so
 * no sibling host can set or read it), except in dev mode on a loopback
 * address, where the browser talks plain HTTP to 127.0.0.1. `plain` is dev
 * mode, or a public_url of http on a loopback host (app.tsx).
 */
export function cookieName(plain: boolean, c: Context): { name: string; secure: boolean } {
  const secure = !(plain && LOOPBACK.has(new URL(c.req.url).hostname));
  return secure ? { name: '__Host-tasklease_console', secure } : { name: 'tasklease_console', secure };
}

export function readSessionCookie(dev: boolean, c: Context): string | undefined {
  return getCookie(c, cookieName(dev, c).name);
}

export function setSessionCookie(dev: boolean, c: Context, token: string, maxAgeSeconds: number): void {
  const { name, secure } = cookieName(dev, c);
  setCookie(c, name, token, { httpOnly: true, secure, sameSite: 'Lax', path: '/', maxAge: maxAgeSeconds });
}

/** The login under way (oidc.ts): its own short-lived cookie, sent back on the provider's top-level redirect (SameSite=Lax). */
function loginCookieName(plain: boolean, c: Context): { name: string; secure: boolean } {
  const { secure } = cookieName(plain, c);
  return secure ? { name: '__Host-tasklease_console_login', secure } : { name: 'tasklease_console_login', secure };
}

export function readLoginCookie(plain: boolean, c: Context): string | undefined {
  return getCookie(c, loginCookieName(plain, c).name);
}

export function setLoginCookie(plain: boolean, c: Context, token: string): void {
  const { name, secure } = loginCookieName(plain, c);
  setCookie(c, name, token, { httpOnly: true, secure, sameSite: 'Lax', path: '/', maxAge: LOGIN_SECONDS });
}

export function clearLoginCookie(plain: boolean, c: Context): void {
  const { name, secure } = loginCookieName(plain, c);
  deleteCookie(c, name, { path: '/', secure, httpOnly: true, sameSite: 'Lax' });
}

export function clearSessionCookie(dev: boolean, c: Context): void {
  const { name, secure } = cookieName(dev, c);
  deleteCookie(c, name, { path: '/', secure, httpOnly: true, sameSite: 'Lax' });
}

/**
 * A state-changing request must come from the console's own pages: a browser
 * that says where it comes from must say "this origin": Sec-Fetch-Site
 * (every current browser sends it) must be same-origin, and Origin must name
 * this host. Under Referrer-Policy no-referrer browsers send an opaque
 * `Origin: null` for their own forms, so `null` passes only beside
 * Sec-Fetch-Site: same-origin. This is the first fence; the CSRF token is the
 * one that holds where a client sends neither header.
 */
export function sameOrigin(c: Context, publicUrl: string): boolean {
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined && site !== 'same-origin') return false;
  const origin = c.req.header('origin');
  if (origin === undefined) return true;
  if (origin === 'null') return site === 'same-origin';
  try {
    const from = new URL(origin);
    if (from.origin === new URL(publicUrl).origin) return true;
    // The request's own Host is trusted only on loopback (dev mode on 127.0.0.1 or localhost under any port):
    // elsewhere a Host an attacker's DNS points here (DNS rebinding) must not pass for this site.
    const host = c.req.header('host') ?? new URL(c.req.url).host;
    return from.host === host && /^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(from.host);
  } catch {
    return false;
  }
}
