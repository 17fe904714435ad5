// The Kubernetes manifests (deploy/kubernetes/), checked with no cluster: every overlay rendered by `kubectl
// kustomize` (Debian's kubectl), every object validated against the Kubernetes schemas (kubernetes-models, and
// the Prometheus operator's for the ServiceMonitor), and what must never be dropped asserted: the security
// context, the probes, the resources, the secret references, the drain. The config each overlay ships is
// parsed by the broker's own schema.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'batch/v1/CronJob': CronJob,
  'batch/v1/Job': Job,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; spec?: any; data?: Record<string, string>; automountServiceAccountToken?: boolean };

/** `kubectl kustomize` of an overlay: its objects. Without kubectl this fails (CI installs it): it never skips. */
function render(overlay: string): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', `deploy/kubernetes/overlays/${overlay}`], { encoding: 'utf8' });
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}
const fileObjects = (path: string) => parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJS() as Obj);
const one = (objects: Obj[], kind: string, name?: string) => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0]!;
};

function validateAll(objects: Obj[]) {
  for (const o of objects) {
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    expect(Model, `a schema for ${o.apiVersion} ${o.kind}`).toBeDefined();
    expect(() => new Model!(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
  }
}

/** What every pod of ours keeps: non-root as uid 10001, no privilege, a read-only root, no capability, seccomp. */
function expectLockedDown(pod: any, container: any) {
  expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } });
  expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
  expect(container.resources.limits.memory).toBeDefined();
  expect(pod.automountServiceAccountToken).toBe(false);
}

/** Secrets come from Secrets: no Secret object with values, and the Deployment's secrets are references. */
function expectNoSecretValues(objects: Obj[]) {
  expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
  for (const o of objects.filter((x) => x.kind === 'ConfigMap')) {
    expect(JSON.stringify(o.data)).not.toMatch(/postgres(ql)?:\/\/[^$\s]*:[^$\s]*@|token_sha256: "?[0-9a-f]{64}/);
  }
}

/** The config the ConfigMap carries, parsed as the broker parses it (with the Secrets' variables set). */
function brokerConfig(objects: Obj[]) {
  const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('tasklease-config'))!;
  const env = { TASKLEASE_ADMIN_TOKEN_SHA256: 'a'.repeat(64) };
  return parseConfig(parseAllDocuments(map.data!['tasklease.yaml']!)[0]!.toJS(), 'tasklease.yaml', env);
}

describe('Kubernetes manifests', () => {
  for (const overlay of ['dev', 'production']) {
    describe(`overlay ${overlay}`, () => {
      const objects = render(overlay);
      const deployment = one(objects, 'Deployment', 'tasklease');
      const pod = deployment.spec.template.spec;
      const broker = pod.containers.find((c: any) => c.name === 'tasklease');

      it('renders objects that all validate against the Kubernetes schemas, in one namespace', () => {
        validateAll(objects);
        const namespaced = objects.filter((o) => o.kind !== 'Namespace');
        expect(new Set(namespaced.map((o) => o.metadata.namespace))).toEqual(new Set([overlay === 'dev' ? 'tasklease-dev' : 'tasklease']));
        expect(one(objects, 'Namespace').metadata).toMatchObject({ labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } });
      });

      it('runs the broker locked down, probed, sized, and drained before it is killed', () => {
        expectLockedDown(pod, broker);
        expect(pod.securityContext.fsGroup).toBe(10001);
        expect(broker.startupProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
        expect(broker.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
        expect(broker.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
        // Requests time out at 20 s; the sweep, deliveries and the refusals' counts (5 s) follow; then the preStop pause.
        expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(45);
        expect(broker.lifecycle.preStop.sleep.seconds).toBeGreaterThan(0);
        expect(broker.image).toMatch(/^ghcr\.io\/tasklease\/tasklease:(?!latest$)[\w.-]+$/);
        // Every path it writes is a volume: the data directory and /tmp.
        expect(broker.volumeMounts.map((m: any) => m.mountPath)).toEqual(expect.arrayContaining(['/var/lib/tasklease', '/tmp', '/etc/tasklease']));
        expect(one(objects, 'ServiceAccount', 'tasklease').automountServiceAccountToken).toBe(false);
      });

      it('takes secrets from Secrets and ships none; the config it ships is valid for the broker', () => {
        expectNoSecretValues(objects);
        const env = Object.fromEntries(broker.env.map((e: any) => [e.name, e]));
        expect(env.TASKLEASE_ADMIN_TOKEN_SHA256.valueFrom.secretKeyRef).toEqual({ name: 'tasklease-admin', key: 'token_sha256' });
        if (overlay === 'production') expect(env.DATABASE_URL.valueFrom.secretKeyRef).toEqual({ name: 'tasklease-database', key: 'url' });
        else expect(env.DATABASE_URL).toBeUndefined(); // dev: embedded PGlite
        const config = brokerConfig(objects);
        expect(config.data_dir).toBe('/var/lib/tasklease');
        expect(config.metrics.listen).toEqual({ host: '0.0.0.0', port: 9464 });
        expect(config.port).toBe(8080);
        expect(broker.ports.map((p: any) => p.containerPort).sort()).toEqual([8080, 9464]);
      });

      it('guards the network both ways and keeps a replica through disruptions', () => {
        const policy = one(objects, 'NetworkPolicy', 'tasklease');
        expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
        expect(policy.spec.podSelector.matchLabels).toMatchObject({ 'app.kubernetes.io/component': 'broker' });
        expect(policy.spec.egress.flatMap((r: any) => r.ports.map((p: any) => p.port))).toEqual(expect.arrayContaining([53, 5432, 443, 8200]));
        expect(one(objects, 'PodDisruptionBudget', 'tasklease').spec.maxUnavailable).toBe(1);
        expect(pod.topologySpreadConstraints.map((c: any) => c.topologyKey)).toEqual(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
      });
    });
  }

  it('production: two replicas rolled without a gap, keys shared on RWX storage, IRSA, Vault token, metrics and audit checks', () => {
    const objects = render('production');
    const deployment = one(objects, 'Deployment', 'tasklease');
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy.rollingUpdate).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    expect(one(objects, 'PersistentVolumeClaim', 'tasklease-keys').spec).toMatchObject({ accessModes: ['ReadWriteMany'], storageClassName: 'efs-sc' });
    expect(one(objects, 'ServiceAccount', 'tasklease').metadata.annotations).toHaveProperty('eks.amazonaws.com/role-arn');
    const vaultToken = deployment.spec.template.spec.volumes.find((v: any) => v.name === 'vault-token');
    expect(vaultToken.projected.sources[0].serviceAccountToken).toMatchObject({ audience: 'vault', path: 'vault-token' });
    const config = brokerConfig(objects);
    expect(config.backends.vault).toMatchObject({ type: 'vault', auth: { method: 'kubernetes', jwt_file: '/var/run/secrets/tokens/vault-token' } });
    expect(one(objects, 'ServiceMonitor', 'tasklease').spec.endpoints[0]).toMatchObject({ port: 'metrics' });
    const cron = one(objects, 'CronJob', 'tasklease-audit-verify');
    const job = cron.spec.jobTemplate.spec.template.spec;
    expect(job.containers[0].args).toEqual(['audit', 'verify']);
    expectLockedDown(job, job.containers[0]);
  });

  it('dev: one replica, data in an emptyDir, no volume claim', () => {
    const objects = render('dev');
    const deployment = one(objects, 'Deployment', 'tasklease');
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.template.spec.volumes.find((v: any) => v.name === 'data')).toEqual({ name: 'data', emptyDir: { sizeLimit: '1Gi' } });
    expect(objects.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
  });

  it('the schemas are not a formality: a broken object fails validation', () => {
    const deployment = structuredClone(one(render('production'), 'Deployment', 'tasklease')) as any;
    deployment.spec.replicas = 'two';
    expect(() => validateAll([deployment])).toThrow();
    const probe = structuredClone(one(render('production'), 'Deployment', 'tasklease')) as any;
    probe.spec.template.spec.containers[0].readinessProbe.httpGet.port = { name: 'http' };
    expect(() => validateAll([probe])).toThrow();
  });

  it("the agents' example Job validates, locked down, with a projected token for the broker's audience", () => {
    const objects = fileObjects('deploy/kubernetes/examples/agent-job.yaml');
    validateAll(objects);
    const job = one(objects, 'Job').spec.template.spec;
    expectLockedDown(job, job.containers[0]);
    expect(job.containers[0].command.slice(0, 3)).toEqual(['npx', 'tasklease', 'run']);
    const token = job.volumes.find((v: any) => v.name === 'tasklease-token').projected.sources[0].serviceAccountToken;
    const audience = brokerConfig(render('production')).issuers[0]!.audiences![0];
    expect(token.audience).toBe(audience);
    expect(job.containers[0].command).toContain(`/var/run/secrets/tokens/${token.path}`);
  });
});
