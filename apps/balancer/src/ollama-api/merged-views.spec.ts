import { namespaceOf } from './merged-views';

describe("namespaceOf (owned_by on /v1/models, as Ollama's model.ParseName reads a name)", () => {
  it.each([
    ['llama3.2', 'library'],
    ['llama3.2:latest', 'library'],
    ['jmorgan/mistral:7b', 'jmorgan'],
    ['hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M', 'bartowski'],
    ['registry.ollama.ai/library/qwen2.5:7b', 'library'],
  ])('%s -> %s', (name, ns) => expect(namespaceOf(name)).toBe(ns));
});
