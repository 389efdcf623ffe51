import { readFileSync } from 'fs';

/**
 * Settings each image reads, from docs/configuration.md (the reference the apps are kept true to):
 * the backticked names in the first column of the balancer's and the gpu-agent's tables. An env
 * name in a manifest outside these is a typo or a stale name, which the app would silently ignore.
 */
export function documentedSettings(configurationMd: string): { balancer: string[]; agent: string[] } {
  const text = readFileSync(configurationMd, 'utf8');
  const agentAt = text.indexOf('\n## gpu-agent');
  const names = (part: string) =>
    [...part.matchAll(/^\| ((?:`[A-Z][A-Z0-9_]*`(?:, )?)+) \|/gm)].flatMap((m) =>
      [...m[1].matchAll(/`([A-Z0-9_]+)`/g)].map((x) => x[1]),
    );
  return { balancer: names(text.slice(0, agentAt)), agent: names(text.slice(agentAt)) };
}

/**
 * Balancer settings the Kubernetes manifests already use whose documentation has not landed yet
 * (none now: REDIS_URL and the shared state's settings are in docs/configuration.md). Remove each
 * from here when it lands.
 */
export const PENDING_BALANCER_SETTINGS: string[] = [];

/** Read by the NVIDIA container toolkit, not by the app. */
export const RUNTIME_SETTINGS = ['NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES'];

/** Ollama's own environment (github.com/ollama/ollama envconfig), for the ollama/ollama image. */
export const OLLAMA_SETTINGS = [
  'OLLAMA_HOST',
  'OLLAMA_NUM_PARALLEL',
  'OLLAMA_MAX_LOADED_MODELS',
  'OLLAMA_KEEP_ALIVE',
  'OLLAMA_MAX_QUEUE',
  'OLLAMA_FLASH_ATTENTION',
  'OLLAMA_KV_CACHE_TYPE',
  'OLLAMA_CONTEXT_LENGTH',
  'OLLAMA_MODELS',
  'OLLAMA_ORIGINS',
  'OLLAMA_SCHED_SPREAD',
  'OLLAMA_GPU_OVERHEAD',
  'OLLAMA_LOAD_TIMEOUT',
  'OLLAMA_DEBUG',
  'OLLAMA_NOPRUNE',
  'OLLAMA_NEW_ENGINE',
];

export function knownSettings(configurationMd: string): Record<string, string[]> {
  const docs = documentedSettings(configurationMd);
  return {
    'ollama-gpu-balancer/balancer': [...docs.balancer, ...PENDING_BALANCER_SETTINGS],
    'ollama-gpu-balancer/gpu-agent': [...docs.agent, ...RUNTIME_SETTINGS],
    'ollama/ollama': [...OLLAMA_SETTINGS, ...RUNTIME_SETTINGS],
  };
}
