import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { checkManifests, defaultKnownRoutes, loadKustomization, Manifest, nestGetRoutes, Obj } from './k8s-check';
import { schemaProblems } from './k8s-schema';
import { knownSettings } from './settings';

const root = path.resolve(__dirname, '../..');
const dir = path.join(root, 'deploy/kubernetes');
const opts = {
  knownRoutes: defaultKnownRoutes(root),
  knownSettings: knownSettings(path.join(root, 'docs/configuration.md')),
};

/** The shipped manifests, deep-copied so each test can break one thing. */
function shipped(): Manifest[] {
  const { manifests, problems } = loadKustomization(dir);
  expect(problems).toEqual([]);
  return manifests.map((m) => ({ ...m, doc: structuredClone(m.doc) }));
}

function find(ms: Manifest[], kind: string, name: string): Obj {
  const m = ms.find((x) => x.doc.kind === kind && x.doc.metadata?.name === name);
  if (!m) throw new Error(`${kind}/${name} not in the manifests`);
  return m.doc;
}

const container = (ms: Manifest[], kind: string, name: string, c: string): Obj =>
  find(ms, kind, name).spec.template.spec.containers.find((x: Obj) => x.name === c);
const problemsOf = (ms: Manifest[]) => checkManifests(ms, opts).problems;

describe('deploy-check: the Kubernetes manifests', () => {
  it('the shipped manifests pass: schemas of the pinned version and every invariant', () => {
    const ms = shipped();
    expect(problemsOf(ms)).toEqual([]);
    expect(ms.map((m) => `${m.doc.kind}/${m.doc.metadata.name}`)).toEqual(
      expect.arrayContaining([
        'Deployment/ollama-balancer',
        'Service/ollama-balancer',
        'PodDisruptionBudget/ollama-balancer',
        'StatefulSet/redis',
        'DaemonSet/ollama',
        'Service/ollama',
        'Secret/ollama-balancer-secrets',
      ]),
    );
  });

  it("routes come from the apps' controllers", () => {
    expect(nestGetRoutes(path.join(root, 'apps/balancer/src'))).toEqual(
      expect.arrayContaining(['/health/live', '/health/ready', '/metrics']),
    );
    expect(nestGetRoutes(path.join(root, 'apps/gpu-agent/src'))).toEqual(
      expect.arrayContaining(['/health/live', '/health/ready', '/status', '/metrics']),
    );
  });

  it('catches a probe on a path the app does not serve', () => {
    const ms = shipped();
    container(ms, 'Deployment', 'ollama-balancer', 'balancer').readinessProbe.httpGet.path = '/healthz';
    container(ms, 'DaemonSet', 'ollama', 'gpu-agent').livenessProbe.httpGet.path = '/health/alive';
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringMatching(
        /Deployment\/ollama-balancer container balancer: readinessProbe GET \/healthz: not a route of ollama-gpu-balancer\/balancer:local/,
      ),
    );
    expect(p).toContainEqual(
      expect.stringMatching(
        /container gpu-agent: livenessProbe GET \/health\/alive: not a route of ollama-gpu-balancer\/gpu-agent/,
      ),
    );
  });

  it('catches a probe on a port the container does not have', () => {
    const ms = shipped();
    container(ms, 'Deployment', 'ollama-balancer', 'balancer').livenessProbe.httpGet.port = 'metrics';
    container(ms, 'StatefulSet', 'redis', 'redis').livenessProbe.tcpSocket.port = 6380;
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining('container balancer: livenessProbe port "metrics" is not a port of this container'),
    );
    expect(p).toContainEqual(
      expect.stringContaining('container redis: livenessProbe port 6380 is not a port of this container'),
    );
  });

  it('catches an unknown field anywhere (the upstream schemas allow them; the API server would refuse them)', () => {
    const ms = shipped();
    find(ms, 'Deployment', 'ollama-balancer').spec.template.spec.terminationGracePeriod = 45;
    container(ms, 'DaemonSet', 'ollama', 'ollama').resources.request = { cpu: '1' };
    find(ms, 'NetworkPolicy', 'redis-from-balancer').spec.ingres = [];
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining(
        'Deployment/ollama-balancer: schema: /spec/template/spec/terminationGracePeriod: unknown field (not in the 1.33 schema of Deployment)',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'DaemonSet/ollama: schema: /spec/template/spec/containers/0/resources/request: unknown field',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining('NetworkPolicy/redis-from-balancer: schema: /spec/ingres: unknown field'),
    );
  });

  it('catches values of the wrong type and APIs the pinned version does not serve', () => {
    const ms = shipped();
    find(ms, 'Deployment', 'ollama-balancer').spec.replicas = '3';
    find(ms, 'PodDisruptionBudget', 'ollama-balancer').apiVersion = 'policy/v1beta1';
    container(ms, 'StatefulSet', 'redis', 'redis').resources.limits.memory = '256 megs';
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining('Deployment/ollama-balancer: schema: /spec/replicas must be integer'),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'policy/v1beta1/PodDisruptionBudget is not an API this project deploys on Kubernetes 1.33',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'StatefulSet/redis: schema: /spec/template/spec/containers/0/resources/limits/memory must match format "quantity"',
      ),
    );
  });

  it('catches a Service, NetworkPolicy or PDB selector that matches nothing, and a targetPort that does not exist', () => {
    const ms = shipped();
    find(ms, 'Service', 'ollama').spec.selector = { 'app.kubernetes.io/name': 'olama' };
    find(ms, 'NetworkPolicy', 'ollama-from-balancer').spec.ingress[0].from[0].podSelector.matchLabels[
      'app.kubernetes.io/name'
    ] = 'balancer';
    find(ms, 'PodDisruptionBudget', 'ollama-balancer').spec.selector.matchLabels = { app: 'ollama-balancer' };
    find(ms, 'Service', 'redis').spec.ports[0].targetPort = 'redis-tls';
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining('Service/ollama: selector {"app.kubernetes.io/name":"olama"} matches no pod template'),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'NetworkPolicy/ollama-from-balancer: ingress from podSelector {"matchLabels":{"app.kubernetes.io/name":"balancer"}} matches no pod template',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'PodDisruptionBudget/ollama-balancer: selector {"matchLabels":{"app":"ollama-balancer"}} matches no pod template',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining('Deployment/ollama-balancer: no PodDisruptionBudget selects the balancer'),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'Service/redis: port redis: targetPort "redis-tls" is not a container port of redis.yaml#2 StatefulSet/redis',
      ),
    );
  });

  it('catches a NetworkPolicy port name no selected pod has', () => {
    const ms = shipped();
    find(ms, 'NetworkPolicy', 'ollama-from-balancer').spec.ingress[0].ports[1].port = 'gpu-agent';
    expect(problemsOf(ms)).toContainEqual(
      expect.stringContaining(
        'NetworkPolicy/ollama-from-balancer: ingress port gpu-agent: no selected pod has a container port of that name',
      ),
    );
  });

  it('catches references to Secrets, keys, ConfigMaps, ServiceAccounts and variables that do not exist', () => {
    const ms = shipped();
    const b = container(ms, 'Deployment', 'ollama-balancer', 'balancer');
    b.env.find((e: Obj) => e.name === 'ADMIN_TOKEN').valueFrom.secretKeyRef.key = 'ADMIN_TOKN';
    b.envFrom[0].configMapRef.name = 'balancer-settings';
    b.env.find((e: Obj) => e.name === 'REDIS_URL').value = 'redis://:$(REDIS_PASS)@redis:6379/0';
    find(ms, 'StatefulSet', 'redis').spec.template.spec.serviceAccountName = 'redis-sa';
    container(ms, 'DaemonSet', 'ollama', 'ollama').volumeMounts[0].name = 'model';
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining(
        'container balancer: env ADMIN_TOKEN: Secret ollama-balancer-secrets has no key ADMIN_TOKN',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining('container balancer: envFrom ConfigMap balancer-settings does not exist'),
    );
    expect(p).toContainEqual(
      expect.stringContaining(
        'container balancer: env REDIS_URL refers to $(REDIS_PASS), which is not defined before it',
      ),
    );
    expect(p).toContainEqual(
      expect.stringContaining('StatefulSet/redis: serviceAccountName redis-sa: no such ServiceAccount'),
    );
    expect(p).toContainEqual(expect.stringContaining('container ollama: volumeMount model: no such volume in the pod'));
  });

  it('catches a setting name the app does not read', () => {
    const ms = shipped();
    container(ms, 'Deployment', 'ollama-balancer', 'balancer').env.push({ name: 'DRAIN_TIMEOUT', value: '30000' });
    find(ms, 'ConfigMap', 'ollama-balancer-settings').data.ROUTING_POLCY = 'predictive';
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining(
        'container balancer: env DRAIN_TIMEOUT is not a setting of ollama-gpu-balancer/balancer:local',
      ),
    );
    expect(p).toContainEqual(expect.stringContaining('container balancer: env ROUTING_POLCY is not a setting'));
  });

  it('catches a grace period shorter than preStop + drain, and a balancer that cannot lose a pod', () => {
    const ms = shipped();
    const d = find(ms, 'Deployment', 'ollama-balancer');
    d.spec.template.spec.terminationGracePeriodSeconds = 30;
    d.spec.replicas = 1;
    delete d.spec.strategy.rollingUpdate.maxUnavailable;
    const p = problemsOf(ms);
    expect(p).toContainEqual(
      expect.stringContaining(
        'terminationGracePeriodSeconds 30 must exceed preStop (5 s) + DRAIN_TIMEOUT_MS (30 s) by 5 s or more',
      ),
    );
    expect(p).toContainEqual(expect.stringContaining('replicas 1: the balancer needs at least 2'));
    expect(p).toContainEqual(expect.stringContaining('strategy must be RollingUpdate with maxUnavailable set'));
  });

  it('catches a gpu-agent without the NVIDIA runtime, the utility capability, a GPU node selector or a read-only root', () => {
    const ms = shipped();
    const ds = find(ms, 'DaemonSet', 'ollama');
    delete ds.spec.template.spec.runtimeClassName;
    delete ds.spec.template.spec.nodeSelector;
    const agent = container(ms, 'DaemonSet', 'ollama', 'gpu-agent');
    agent.env.find((e: Obj) => e.name === 'NVIDIA_DRIVER_CAPABILITIES').value = 'compute,utility';
    agent.securityContext.readOnlyRootFilesystem = false;
    const p = problemsOf(ms);
    expect(p).toContainEqual(expect.stringContaining('container gpu-agent: the pod needs runtimeClassName: nvidia'));
    expect(p).toContainEqual(
      expect.stringContaining('container gpu-agent: NVIDIA_DRIVER_CAPABILITIES must be utility'),
    );
    expect(p).toContainEqual(
      expect.stringContaining('DaemonSet/ollama: a GPU DaemonSet needs a nodeSelector or node affinity'),
    );
    expect(p).toContainEqual(
      expect.stringContaining('container gpu-agent: securityContext.readOnlyRootFilesystem must be true'),
    );
  });

  it('catches a YAML file the kustomization does not list, and a listed one that is missing', () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'deploy-check-'));
    try {
      cpSync(dir, tmp, { recursive: true });
      writeFileSync(path.join(tmp, 'extra.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n');
      rmSync(path.join(tmp, 'redis.yaml'));
      const { problems } = loadKustomization(tmp);
      expect(problems).toEqual([
        'kustomization.yaml: extra.yaml is in the directory but not in resources',
        'kustomization.yaml: resource redis.yaml does not exist',
      ]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('schemaProblems alone: a valid object has none', () => {
    expect(
      schemaProblems({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'x', labels: { a: 'b' } },
        data: { ANY_KEY: 'v' },
      }),
    ).toEqual([]);
    expect(schemaProblems({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, dat: {} })).toEqual([
      'schema: /dat: unknown field (not in the 1.33 schema of ConfigMap)',
    ]);
  });
});
