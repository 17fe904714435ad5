import { brokerKeyStoreOptions, createSigningKeyStore, type SigningKeyStore } from './backends/jwt-keys.js';
import { createAwsRevocationStore } from './backends/aws-revocation-store.js';
import { createAwsStsBackend } from './backends/aws-sts.js';
import { createJwtBackend } from './backends/jwt.js';
import { createVaultBackend } from './backends/vault.js';
import type { Backend } from './backends/types.js';
import type { Clock } from './clock.js';
import { withTimeout } from './concurrency.js';
import type { Config } from './config/schema.js';
import { ping, type Database } from './db/client.js';
import { migrationsCurrent } from './db/migrate.js';
import type { NotifyHandlers } from './db/notify.js';
import { createApp } from './http/app.js';
import { createConsole } from './console/app.js';
import { devSuggestions, DEV_LOGIN_ISSUER } from './console/dev-login.js';
import { createSessionStore } from './console/sessions.js';
import { createOidcLogin } from './console/oidc.js';
import { signDevToken } from './config/dev.js';
import { createAuthenticator } from './identity/principals.js';
import { createTokenVerifier } from './identity/verifier.js';
import { createIntrospector } from './leases/introspect.js';
import { createTokenExchange } from './oauth/exchange.js';
import { authorizationServerMetadata } from './oauth/metadata.js';
import { createRevocation } from './oauth/revoke.js';
import { createDpopVerifier } from './oauth/dpop.js';
import { createClientAuthenticator } from './oauth/clients.js';
import { createIssuer } from './leases/issue.js';
import { createRenewer } from './leases/renew.js';
import { createLeaseService } from './leases/service.js';
import { createLeaseWriter } from './leases/writer.js';
import type { Logger } from './log.js';
import { createAgentRegistry, REGISTRY_CHANNEL } from './agents/registry.js';
import { createAgentService } from './agents/service.js';
import { createApprovalService } from './approvals/service.js';
import { createCheckpoint } from './audit/checkpoint.js';
import { createRefusalAudit } from './audit/refusals.js';
import { createMetricsApp } from './http/metrics.js';
import { createMetrics } from './metrics.js';
import { createNotifier } from './notify/notifier.js';
import { createApprovalOutbox, pruneDelivered } from './notify/outbox.js';
import { OUTBOX_KINDS } from './db/schema.js';
import { createSecurityEventOutbox } from './oauth/ssf/events.js';
import { ssfMetadata } from './oauth/ssf/metadata.js';
import { createSecurityEventPoll } from './oauth/ssf/poll.js';
import { createTransmitter } from './oauth/ssf/transmitter.js';
import { policyFromConfig } from './policy/cedar/load.js';
import { createPolicyReloader } from './policy/cedar/reload.js';
import { createLimits } from './policy/limits.js';
import { createRateLimiter } from './policy/rate-limit.js';
import { createSweeper } from './sweeper/sweeper.js';
import { createTaskCache, TASK_CLOSED_CHANNEL } from './tasks/cache.js';
import { createTaskService } from './tasks/service.js';
import { createTaskClosures } from './tasks/closures.js';
import { createGatewayCallAudit } from './tasks/gateway-calls.js';

export interface BrokerDeps {
  config: Config;
  database: Database;
  clock: Clock;
  log: Logger;
  /** Names this replica in sweeper claims. */
  instanceId: string;
  /** Backends built elsewhere (tests inject fakes); config-built ones fill the rest. */
  backends?: Map<string, Backend>;
  version?: string;
  /** The broker's own AWS credentials (tests); the SDK's default chain otherwise. */
  awsCredentials?: { accessKeyId: string; secretAccessKey: string };
  awsPruneIntervalSeconds?: number;
}

/** Builds every service from its dependencies: the one place where the broker is wired. */
export async function createBroker(deps: BrokerDeps) {
  const { config, database, clock, log } = deps;
  const db = database.db;
  const jwtBackends = Object.entries(config.backends).flatMap(([name, b]) => (b.type === 'jwt' ? [[name, b] as const] : []));
  const keys: SigningKeyStore = await createSigningKeyStore(brokerKeyStoreOptions(config, clock));

  const metrics = createMetrics(db, {
    readiness: async () => {
      const checks = await ready();
      return { database: checks.database, migrations: checks.migrations, backends: Object.values(checks.backends ?? {}).every((b) => b.ok), policy: !checks.policy.reloadError };
    },
  });
  const backends = new Map<string, Backend>(deps.backends);
  for (const [name] of jwtBackends) {
    if (!backends.has(name)) backends.set(name, createJwtBackend({ name, issuer: config.public_url, keys }));
  }
  const rolesOf = (name: string) => () => config.roles.filter((r) => r.backend === name).map((r) => r.name);
  const roleByName = (role: string) => config.roles.find((r) => r.name === role);
  for (const [name, backend] of Object.entries(config.backends)) {
    if (backend.type !== 'vault' || backends.has(name)) continue;
    backends.set(name, createVaultBackend({ name, config: backend, role: roleByName, roleNames: rolesOf(name), clock, log: log.child({ backend: name }) }));
  }
  for (const [name, backend] of Object.entries(config.backends)) {
    if (backend.type !== 'aws-sts' || backends.has(name)) continue;
    backends.set(
      name,
      createAwsStsBackend({
        name,
        config: backend,
        role: roleByName,
        roleNames: rolesOf(name),
        clock,
        log: log.child({ backend: name }),
        lock: (key, fn) => database.withAdvisoryLock(key, fn, 10_000),
        store: createAwsRevocationStore(db),
        metrics,
        credentials: deps.awsCredentials,
        pruneIntervalSeconds: deps.awsPruneIntervalSeconds,
      }),
    );
  }

  const policy = policyFromConfig(config);
  const policyReloader = createPolicyReloader({
    policy,
    files: config.policy.cedar.files,
    log: log.child({ component: 'policy' }),
    onFailure: () => metrics.policyReloadFailures.inc(),
    // Every change of the set in force, and every refused one, is in the audit trail (this replica's).
    onReload: ({ why, from, to, problems }) =>
      void writer
        .audit([
          {
            at: clock.now(),
            actor: 'system:policy',
            action: problems ? 'policy.reload_refused' : 'policy.reloaded',
            target: `policy_set:${to}`,
            decision: problems ? 'deny' : 'allow',
            ...(problems ? { reason: problems.join('; ') } : {}),
            details: { why, from, to, policies: policy.cedar.ids.length },
          },
        ])
        .catch(() => log.error({ component: 'policy' }, 'could not audit a policy reload')),
  });
  const limits = createLimits(config.policy);
  const notifier = createNotifier({
    db,
    clock,
    config: config.notifications,
    publicUrl: config.public_url,
    log: log.child({ component: 'notifier' }),
    id: deps.instanceId,
    metrics,
  });
  // Each new approval request gets an outbox row per webhook, in its own transaction; this replica delivers it at once.
  const outbox = createApprovalOutbox({ clock, destinations: () => config.notifications.webhooks.map((w) => w.name), onAppended: () => notifier.nudge() });
  const approvals = createApprovalService({ db, clock, policy, ttlSeconds: config.policy.approvals.ttl, outbox });
  // Repeated refusals' counts, written through the writer below when their window ends (the sweeper's housekeeping) or on drain.
  const refusals = createRefusalAudit({ clock, write: (events) => writer.audit(events), log });
  // DPoP proofs seen, shared by the replicas (oauth/dpop.ts); housekeeping drops those past their window.
  const dpop = createDpopVerifier({ db, clock });
  // Security events (SSF): written when the sweeper ends a jwt lease, in its transaction; pushed, or handed to polls.
  const ssfDeps = { db, clock, keys, issuer: config.public_url, config: config.oauth, log: log.child({ component: 'ssf' }), metrics };
  const transmitter = createTransmitter({ ...ssfDeps, id: deps.instanceId });
  const ssfPoll = createSecurityEventPoll(ssfDeps);
  const securityEvents = createSecurityEventOutbox({
    clock,
    issuer: config.public_url,
    receivers: config.oauth.resource_servers,
    // The jwt backend's `aud`: the role's audience, or its name.
    audienceOf: (lease) => (config.backends[lease.backend]?.type === 'jwt' ? (roleByName(lease.role)?.jwt?.audience ?? lease.role) : undefined),
    onAppended: () => {
      transmitter.nudge();
      ssfPoll.appended();
    },
  });
  const sweeper = createSweeper({
    db,
    metrics,
    ended: securityEvents,
    clock,
    backends,
    config: config.sweeper,
    log: log.child({ component: 'sweeper' }),
    id: deps.instanceId,
    housekeeping: async () => {
      await approvals.expire();
      await refusals.flushDue();
      await dpop.prune();
      await agentService.revokeLeftovers();
      await consoleSessions.prune();
      await consoleOidc?.prune();
      await pruneDelivered(db, OUTBOX_KINDS.securityEvent, new Date(clock.now().getTime() - config.oauth.security_events.keep_delivered * 1000));
      for (const backend of backends.values()) await backend.housekeeping?.(clock.now());
    },
  });
  const onRevokeRequested = () => sweeper.nudge();
  const rate = config.policy.rate_limit;
  const rateLimiter = rate ? createRateLimiter({ rate: rate.per_agent_per_second, burst: rate.burst, clock }) : undefined;
  const verifier = createTokenVerifier({ issuers: config.issuers, defaultAudience: config.public_url, clock });
  const authenticator = createAuthenticator(verifier, config.principals);
  const writer = createLeaseWriter({ writes: database.writes, limits, onRevokeRequested });
  const taskCache = createTaskCache({ db, clock });
  /** Listens on `channel` (closed with the database); a loss is logged once, and so is the recovery, not every retry. */
  const listen = (channel: string, handlers: NotifyHandlers, what: string, meanwhile: string) => {
    let announced = true;
    database.listen(channel, {
      message: handlers.message,
      listening(on, reason) {
        if (!on && announced) log.warn({ reason }, `${what} are not being announced; ${meanwhile} until they are`);
        if (on && !announced) log.info(`${what} are announced again`);
        announced = on;
        handlers.listening(on);
      },
    });
  };
  // Closures wake the gateway's waiters too (tasks/closures.ts).
  const closures = createTaskClosures({ db });
  listen(
    TASK_CLOSED_CHANNEL,
    {
      message: (id) => (taskCache.handlers.message(id), closures.handlers.message(id)),
      listening: (on, reason) => (taskCache.handlers.listening(on, reason), closures.handlers.listening(on, reason)),
    },
    'task closures',
    'open tasks are cached for 1 s',
  );
  const registry = createAgentRegistry({ db, clock, log: log.child({ component: 'agents' }), configured: config.agents.register });
  listen(REGISTRY_CHANNEL, registry.handlers, 'agent registry changes', 'the registry is read again every second');
  // Read now if the database answers; otherwise on the first decision (the broker starts without its database, /readyz says so).
  void registry.reload().catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : 'unknown' }, 'the agent registry could not be read yet'));
  const agentService = createAgentService({
    db,
    clock,
    log: log.child({ component: 'agents' }),
    registry,
    horizonMs: config.tasks.max_ttl * 1000,
    knownRole: (name) => policy.role(name) !== undefined,
    knownIssuer: (name) => config.issuers.some((i) => i.name === name),
    onRevokeRequested,
    // Dev mode registers each agent-* subject of the dev issuer, owned by `dev`, on first sight.
    ...(config.dev
      ? { autoRegister: { issuer: 'dev', subjectPattern: 'agent-.*', owner: { name: 'dev', contact: 'dev mode', principals: [] }, roles: policy.roleNames() } }
      : {}),
  });
  const issue = createIssuer({ db, clock, policy, limits, approvals, rateLimiter, refusals, backends, writer, taskCache, log, metrics, agents: agentService });
  const leases = createLeaseService({ db, clock, onRevokeRequested });
  const renew = createRenewer({ db, clock, policy, backends, agents: agentService });
  const tasks = createTaskService({
    db,
    clock,
    knownRoles: (name) => policy.role(name) !== undefined,
    issuers: config.issuers.map((i) => i.name),
    maxTaskTtlSeconds: config.tasks.max_ttl,
    onRevokeRequested,
    onTaskOpened: (task) => taskCache.remember(task),
    onTaskClosed: (id) => taskCache.forget(id),
    admit: (agent, roles) => agentService.admitTask(agent, roles, config.agents.require_registration),
    policy,
  });
  const introspect = createIntrospector({ db, clock, keys, issuer: config.public_url });

  // Backend permission checks cost a call to the backend: their answer is kept for 30 s.
  let backendChecks: { at: number; result: Record<string, { ok: boolean; missing: string[] }> } | undefined;
  async function checkBackends() {
    const now = clock.now().getTime();
    if (backendChecks && now - backendChecks.at < 30_000) return backendChecks.result;
    const result: Record<string, { ok: boolean; missing: string[] }> = {};
    for (const backend of backends.values()) {
      if (!backend.check) continue;
      result[backend.name] = await backend.check().catch(() => ({ ok: false, missing: ['the backend could not be reached'] }));
    }
    backendChecks = { at: now, result };
    return result;
  }

  async function ready() {
    // A readiness probe must answer quickly even when the database does not.
    const database_ = await withTimeout(ping(db), 2000, 'ping timed out').then(
      () => true,
      () => false,
    );
    const backendStatus = await checkBackends();
    return {
      database: database_,
      migrations: database_ && (await withTimeout(migrationsCurrent(database), 2000, 'timed out').catch(() => false)),
      ...(Object.keys(backendStatus).length ? { backends: backendStatus } : {}),
      policy: policyReloader.status(),
    };
  }

  const consoleSessions = createSessionStore({ db, clock, idleSeconds: config.console.idle_timeout, absoluteSeconds: config.console.absolute_timeout });
  const oidcConfig = config.console.oidc;
  const consoleOidc = oidcConfig ? createOidcLogin({ db, clock, config: oidcConfig, redirectUri: `${config.public_url}/console/callback`, postLogoutRedirectUri: `${config.public_url}/console/signed-out`, maxPending: config.console.login_limit.max_pending }) : undefined;
  const consoleApp = createConsole({
    db,
    clock,
    log: log.child({ component: 'console' }),
    approvals,
    registry,
    agentService,
    leases,
    tasks,
    policy,
    authenticator,
    sessions: consoleSessions,
    publicUrl: config.public_url,
    absoluteSeconds: config.console.absolute_timeout,
    loginLimit: config.console.login_limit,
    ...(oidcConfig && consoleOidc ? { oidc: { issuer: oidcConfig.issuer_name, login: consoleOidc } } : {}),
    checkBackends,
    // "Retry now" on a failing delivery: both workers look again at once, at every destination.
    nudgeNotifier: () => {
      notifier.retryNow();
      transmitter.retryNow();
    },
    // Dev mode only: a person signs in as a subject of the dev issuer (it takes the place of console.oidc).
    ...(config.dev
      ? { devLogin: { issuer: DEV_LOGIN_ISSUER, sign: (subject: string) => signDevToken(config.data_dir, subject, 60), suggestions: devSuggestions(config) } }
      : {}),
  });

  // The OAuth surface (docs/oauth.md): the same issuance and leases as the REST routes.
  const backendType = (name: string) => config.backends[name]?.type;
  const base = config.public_url.replace(/\/$/, '');
  const oauth = {
    metadata: () => authorizationServerMetadata(config.public_url, policy.roleNames().map((n) => policy.role(n)!).filter((r) => backendType(r.backend) === 'jwt')),
    exchange: createTokenExchange({ authenticator, policy, backendType, issue, tasks, dpop, tokenEndpoint: `${base}/oauth2/token`, maxDelegationDepth: config.oauth.max_delegation_depth, clock, refuse: (key, event) => refusals.refuse(key, event, { wait: true }) }),
    revoke: createRevocation({ clock, keys, issuer: config.public_url, authenticator, leases }),
    clients: createClientAuthenticator({ servers: config.oauth.resource_servers, audiences: [config.public_url, `${base}/oauth2/introspect`], clock }),
  };

  const app = createApp({
    db,
    oauth,
    ssf: { metadata: () => ssfMetadata(config.public_url), poll: ssfPoll },
    gateway: { closures, recordCalls: createGatewayCallAudit({ closures, clock, audit: (events) => writer.audit(events), limiter: createRateLimiter({ rate: 5, burst: 20, clock }) }) },
    dpop: { verifier: dpop, publicUrl: base },
    approvals,
    policy,
    limits,
    clock,
    log,
    authenticator,
    issue,
    renew,
    leases,
    tasks,
    introspect,
    registry,
    agentService,
    jwks: () => keys.jwks(),
    auditCheckpoint: () => createCheckpoint({ db, keys, issuer: config.public_url, clock }),
    ready,
    metrics: () => metrics.registry.metrics(),
    metricsTokenSha256: config.metrics.token_sha256,
    version: deps.version ?? '0.0.0',
    console: consoleApp,
  });
  // Served by `tasklease serve` on config.metrics.listen.
  const metricsApp = createMetricsApp({ metrics: () => metrics.registry.metrics(), tokenSha256: config.metrics.token_sha256, log });

  return { app, metricsApp, sweeper, notifier, transmitter, refusals, metrics, keys, backends, issue, leases, tasks, introspect, approvals, checkBackends, registry, agentService, consoleSessions, policyReloader };
}
export type Broker = Awaited<ReturnType<typeof createBroker>>;
