import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';

/**
 * The Kubernetes version whose OpenAPI schemas these checks use: kubernetes-models 4.5.x is
 * generated from Kubernetes v1.33.0 (its CHANGELOG: "Update schema version to v1.33.0"), merged
 * with older releases' specs so that removed APIs still have models. Only the apiVersion/kind pairs
 * below, all served by 1.33, are accepted, so a removed API (policy/v1beta1, extensions/v1beta1)
 * is an error although its model exists.
 */
export const KUBERNETES_VERSION = '1.33';

type ModelClass = { prototype: { validate(): void } };

const SERVED: Record<string, ModelClass> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/DaemonSet': DaemonSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'networking.k8s.io/v1/Ingress': Ingress,
};

/** The kinds this project deploys (extend SERVED when a new one is needed). */
export const SERVED_KINDS = Object.keys(SERVED);

type Accessed = Map<string, Set<string> | 'map'>;

/**
 * Wraps a manifest so that the schema validator's reads are recorded per object path. The
 * validators kubernetes-models compiles from the OpenAPI spec read every property the schema
 * declares (and enumerate the keys of maps such as labels); a key it never read is a field the
 * schema does not know. The upstream schemas do not set additionalProperties: false, so this is
 * how an unknown field (a typo such as "terminationGracePeriod") is caught without a cluster, as
 * the API server's strict field validation would catch it.
 */
function recordReads(root: unknown): { proxy: unknown; accessed: Accessed } {
  const accessed: Accessed = new Map();
  const wrap = (obj: unknown, path: string): unknown => {
    if (obj === null || typeof obj !== 'object') return obj;
    return new Proxy(obj, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof key !== 'string') return value;
        let seen = accessed.get(path);
        if (seen === undefined) accessed.set(path, (seen = new Set()));
        if (seen !== 'map') seen.add(key);
        return wrap(value, `${path}/${key}`);
      },
      ownKeys(target) {
        accessed.set(path, 'map');
        return Reflect.ownKeys(target);
      },
    });
  };
  return { proxy: wrap(root, ''), accessed };
}

function unknownFields(obj: unknown, accessed: Accessed, path = ''): string[] {
  if (obj === null || typeof obj !== 'object') return [];
  const seen = accessed.get(path);
  const out: string[] = [];
  for (const key of Object.keys(obj)) {
    const child = (obj as Record<string, unknown>)[key];
    if (!Array.isArray(obj) && seen !== 'map' && !seen?.has(key)) out.push(`${path}/${key}`);
    else out.push(...unknownFields(child, accessed, `${path}/${key}`));
  }
  return out;
}

/** Schema problems of one object: an API not served by the pinned version, schema errors, unknown fields. */
export function schemaProblems(doc: Record<string, unknown>): string[] {
  const apiVersion = String(doc.apiVersion ?? '');
  const kind = String(doc.kind ?? '');
  const model = SERVED[`${apiVersion}/${kind}`];
  if (!model) {
    return [
      `${apiVersion}/${kind} is not an API this project deploys on Kubernetes ${KUBERNETES_VERSION} (served here: ${SERVED_KINDS.join(', ')})`,
    ];
  }
  const { proxy, accessed } = recordReads(doc);
  const problems: string[] = [];
  try {
    model.prototype.validate.call(proxy);
  } catch (e) {
    problems.push(
      ...String((e as Error).message)
        .split(', ')
        .map((m) => `schema: ${m.replace(/^data\//, '/')}`),
    );
  }
  for (const f of unknownFields(doc, accessed))
    problems.push(`schema: ${f}: unknown field (not in the ${KUBERNETES_VERSION} schema of ${kind})`);
  return problems;
}
