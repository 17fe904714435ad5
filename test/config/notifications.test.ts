import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const SECRET = 'webhook-secret-from-env-0123456789';

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const parse = (notifications: unknown, env: Record<string, string> = {}) => parseConfig({ notifications }, 'test.yaml', env);

describe('notifications config', () => {
  it('defaults to no webhooks, 5 s interval, 10 s timeout, 8 fast attempts, failed retried every 15 min', () => {
    expect(parseConfig({}, 'test.yaml').notifications).toEqual({ webhooks: [], interval: 5, timeout: 10, max_attempts: 8, failed_retry_interval: 900 });
  });

  it('expands the secret and the URL from the environment, and defaults the format to json', () => {
    const config = parse(
      { webhooks: [{ name: 'hooks', url: '${HOOK_URL}', secret: '${HOOK_SECRET}' }, { name: 'chat', url: 'https://hooks.slack.com/services/x', format: 'slack' }], timeout: '5s' },
      { HOOK_URL: 'https://receiver.example.com/tasklease', HOOK_SECRET: SECRET },
    );
    expect(config.notifications.webhooks).toEqual([
      { name: 'hooks', url: 'https://receiver.example.com/tasklease', format: 'json', secret: SECRET },
      { name: 'chat', url: 'https://hooks.slack.com/services/x', format: 'slack' },
    ]);
    expect(config.notifications.timeout).toBe(5);
  });

  it('refuses a missing variable, naming it', () => {
    expect(configError(() => parse({ webhooks: [{ name: 'hooks', url: 'https://r.example.com', secret: '${HOOK_SECRET}' }] }))).toContain(
      'notifications.webhooks[0].secret: environment variable HOOK_SECRET is not set',
    );
  });

  it('refuses a short secret without echoing it', () => {
    const message = configError(() => parse({ webhooks: [{ name: 'hooks', url: 'https://r.example.com', secret: 'short-secret' }] }));
    expect(message).toContain('notifications.webhooks[0].secret: at least 16 characters');
    expect(message).not.toContain('short-secret');
  });

  it('refuses URLs that are not http(s), duplicate names, a signed slack webhook and a timeout past 60 s', () => {
    expect(configError(() => parse({ webhooks: [{ name: 'hooks', url: 'file:///etc/passwd' }] }))).toContain('notifications.webhooks[0].url: an http(s) URL');
    expect(configError(() => parse({ webhooks: [{ name: 'hooks', url: 'not a url' }] }))).toContain('notifications.webhooks[0].url');
    expect(
      configError(() =>
        parse({
          webhooks: [
            { name: 'hooks', url: 'https://a.example.com' },
            { name: 'hooks', url: 'https://b.example.com' },
          ],
        }),
      ),
    ).toContain('webhook names must be unique');
    expect(configError(() => parse({ webhooks: [{ name: 'chat', url: 'https://hooks.slack.com/x', format: 'slack', secret: SECRET }] }))).toContain('a slack webhook is not signed');
    expect(configError(() => parse({ timeout: '2m' }))).toContain('notifications.timeout: between 1s and 60s');
    expect(configError(() => parse({ webhooks: [{ name: 'hooks', url: 'https://a.example.com', verify: false }] }))).toContain('notifications.webhooks[0]');
  });
});
