/**
 * Model names as Ollama reads them (github.com/ollama/ollama, types/model/name.go and
 * server/routes.go; the spec beside this file cites the functions).
 *
 * Ollama parses a name into host / namespace / model / tag (`ParseNameBare`), fills the parts
 * left out from `registry.ollama.ai` / `library` / `latest` (`ParseName` → `Merge` with
 * `DefaultName`), and finds the model on disk comparing each part case-insensitively
 * (`getExistingName`, `strings.EqualFold`). Its lists show `DisplayShortest`: host and namespace
 * only when they are not the defaults, then `model:tag`.
 */
export interface ModelName {
  host: string;
  namespace: string;
  model: string;
  tag: string;
}

const DEFAULT_HOST = 'registry.ollama.ai';
const DEFAULT_NAMESPACE = 'library';
const DEFAULT_TAG = 'latest';
/** A part promised by its separator but empty ("llama3.2:"): never filled from the defaults. */
const MISSING = '\0missing';

/** Ollama's `cutPromised`: cut at the last `sep`; an empty side is MISSING rather than "". */
function cutPromised(s: string, sep: string): [before: string, after: string, found: boolean] {
  const i = s.lastIndexOf(sep);
  if (i < 0) return [s, '', false];
  return [s.slice(0, i) || MISSING, s.slice(i + sep.length) || MISSING, true];
}

/** Ollama's `ParseName`: the parts of `s`, the ones left out filled with the defaults. */
export function parseModelName(s: string): ModelName {
  const n: ModelName = { host: '', namespace: '', model: '', tag: '' };
  let rest = s;
  // "/" is not allowed in a tag, so a ":" after the last "/" starts the tag (a host may have a port).
  if (rest.lastIndexOf(':') > rest.lastIndexOf('/')) [rest, n.tag] = cutPromised(rest, ':');
  let found: boolean;
  [rest, n.model, found] = cutPromised(rest, '/');
  if (!found) n.model = rest;
  else {
    [rest, n.namespace, found] = cutPromised(rest, '/');
    if (!found) n.namespace = rest;
    else {
      const scheme = rest.indexOf('://');
      n.host = scheme >= 0 ? rest.slice(scheme + 3) : rest;
    }
  }
  return {
    host: n.host || DEFAULT_HOST,
    namespace: n.namespace || DEFAULT_NAMESPACE,
    model: n.model,
    tag: n.tag || DEFAULT_TAG,
  };
}

/** Ollama's `Name.DisplayShortest`: `model:tag`, after `namespace/` or `host/namespace/` when not the defaults. */
export function displayModelName(n: ModelName): string {
  const part = (p: string) => (p === MISSING ? '' : p);
  let out = '';
  if (n.host.toLowerCase() !== DEFAULT_HOST) out = `${part(n.host)}/${part(n.namespace)}/`;
  else if (n.namespace.toLowerCase() !== DEFAULT_NAMESPACE) out = `${part(n.namespace)}/`;
  return `${out}${part(n.model)}:${part(n.tag)}`;
}

/**
 * The key under which two names are the same model to Ollama: its shortest display form,
 * lower-cased (Ollama matches every part with EqualFold). `llama3.2`, `Llama3.2:latest` and
 * `registry.ollama.ai/library/llama3.2:latest` all give `llama3.2:latest`. Surrounding spaces are
 * ignored (Ollama would refuse them: the balancer still routes, and the backend answers). An empty
 * name stays empty.
 */
export function normaliseModelName(name: string): string {
  const s = name.trim();
  if (s === '') return s;
  return displayModelName(parseModelName(s)).toLowerCase();
}
