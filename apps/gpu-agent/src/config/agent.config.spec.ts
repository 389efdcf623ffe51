import { parseAgentConfig, parseOllamaHost } from './agent.config';

describe('gpu-agent config', () => {
  it.each([
    [undefined, 'http://127.0.0.1:11434'],
    ['', 'http://127.0.0.1:11434'],
    ['0.0.0.0', 'http://127.0.0.1:11434'],
    ['0.0.0.0:11435', 'http://127.0.0.1:11435'],
    [':11500', 'http://127.0.0.1:11500'],
    ['gpu-7.internal', 'http://gpu-7.internal:11434'],
    ['10.0.0.5:8080', 'http://10.0.0.5:8080'],
    ['http://ollama.local', 'http://ollama.local:80'],
    ['https://ollama.example.com', 'https://ollama.example.com:443'],
    ['https://ollama.example.com:8443/', 'https://ollama.example.com:8443'],
    ['"127.0.0.1:11434"', 'http://127.0.0.1:11434'],
    ['[::1]:11434', 'http://[::1]:11434'],
    ['::1', 'http://[::1]:11434'],
  ])('OLLAMA_HOST=%p -> %s (as Ollama reads it)', (value, url) => {
    expect(parseOllamaHost(value)).toBe(url);
  });

  it('has documented defaults', () => {
    const c = parseAgentConfig({});
    expect(c).toMatchObject({
      port: 9400,
      ollamaUrl: 'http://127.0.0.1:11434',
      nvmlPollIntervalMs: 2000,
      ollamaPollIntervalMs: 5000,
      ollamaTimeoutMs: 2000,
      agentToken: null,
      nvmlLibraryPath: undefined,
    });
    expect(c.hostnameLabel).toEqual(expect.any(String));
  });

  it.each([
    [{ NVML_POLL_INTERVAL_MS: 'abc' }, 'Invalid configuration: NVML_POLL_INTERVAL_MS="abc" must be a positive integer'],
    [{ NVML_POLL_INTERVAL_MS: '-5' }, 'NVML_POLL_INTERVAL_MS="-5"'],
    [{ OLLAMA_TIMEOUT_MS: '1.5' }, 'OLLAMA_TIMEOUT_MS="1.5"'],
    [{ PORT: 'http' }, 'PORT="http"'],
    [{ OLLAMA_HOST: 'ftp://x' }, 'OLLAMA_HOST="ftp://x" must use http:// or https://'],
    [{ HOSTNAME_LABEL: 'a b' }, 'HOSTNAME_LABEL="a b"'],
    [{ AGENT_TOKEN: 'short' }, 'AGENT_TOKEN="<redacted>" must be at least 8 characters'],
  ])('rejects %p naming the setting and value', (env, message) => {
    expect(() => parseAgentConfig(env)).toThrow(message);
  });
});
