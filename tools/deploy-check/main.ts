/**
 * Validates deploy/kubernetes without a cluster (scripts/check-deploy.sh runs it in CI):
 *   node -r ts-node/register/transpile-only -r tsconfig-paths/register tools/deploy-check/main.ts [dir]
 * Prints what passed and every problem; exits 1 on any problem.
 */
import * as path from 'path';
import { readFileSync } from 'fs';
import { loadBalancerConfig } from '../../apps/balancer/src/config/balancer-config';
import { loadSharedStateConfig, redactRedisUrl } from '../../apps/balancer/src/config/shared-state-config';
import { parseAgentConfig } from '../../apps/gpu-agent/src/config/agent.config';
import { checkKubernetesDir, containerEnv, defaultKnownRoutes, Manifest } from './k8s-check';
import { KUBERNETES_VERSION } from './k8s-schema';
import { knownSettings } from './settings';

const repoRoot = path.resolve(__dirname, '../..');
const dir = path.resolve(process.argv[2] ?? path.join(repoRoot, 'deploy/kubernetes'));
const modelsVersion = (
  JSON.parse(readFileSync(require.resolve('kubernetes-models/package.json'), 'utf8')) as { version: string }
).version;

console.log(
  `Kubernetes ${KUBERNETES_VERSION} schemas (kubernetes-models ${modelsVersion}), ${path.relative(process.cwd(), dir) || '.'}`,
);
const result = checkKubernetesDir(dir, {
  knownRoutes: defaultKnownRoutes(repoRoot),
  knownSettings: knownSettings(path.join(repoRoot, 'docs/configuration.md')),
});
for (const line of result.summary) console.log(`  ok  ${line}`);

// The apps' own validators accept the settings each container gets (secrets from the example file).
const byKindName = new Map<string, Manifest>(result.manifests.map((m) => [`${m.doc.kind}/${m.doc.metadata?.name}`, m]));
const appProblems: string[] = [];
for (const m of result.manifests) {
  for (const c of m.doc.spec?.template?.spec?.containers ?? []) {
    const image = String(c.image ?? '');
    const env = containerEnv(c, byKindName);
    const where = `${m.where} container ${c.name}`;
    try {
      if (image.startsWith('ollama-gpu-balancer/balancer')) {
        const cfg = loadBalancerConfig(env);
        const shared = loadSharedStateConfig(env);
        const dns = cfg.discovery.dns.map((t) => `${t.host}:${t.port}`).join(', ') || 'none';
        console.log(
          `  ok  ${where}: loadBalancerConfig and loadSharedStateConfig accept its settings (policy ${cfg.policy}, drain ${cfg.drainTimeoutMs} ms, DNS discovery ${dns}, registration ${cfg.discovery.registration ? 'on' : 'off'}, shared state ${shared.url ? redactRedisUrl(shared.url) : 'off'})`,
        );
      } else if (image.startsWith('ollama-gpu-balancer/gpu-agent')) {
        const cfg = parseAgentConfig(env, () => '10.0.0.1');
        console.log(
          `  ok  ${where}: parseAgentConfig accepts its settings (port ${cfg.port}, Ollama ${cfg.ollamaUrl})`,
        );
      }
    } catch (e) {
      appProblems.push(`${where}: ${(e as Error).message}`);
    }
  }
}

const problems = [...result.problems, ...appProblems];
for (const p of problems) console.log(`  FAIL ${p}`);
console.log(problems.length ? `${problems.length} problem(s)` : `ok: ${result.manifests.length} objects`);
process.exit(problems.length ? 1 : 0);
