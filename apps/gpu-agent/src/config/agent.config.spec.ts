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

  describe('registration (BALANCER_URL)', () => {
    const token = 'registration-token-0123456789';
    const base = { BALANCER_URL: 'http://balancer:11434', REGISTRATION_TOKEN: token, HOSTNAME_LABEL: 'gpu-7' };
    const podIp = () => '10.244.1.17';

    it('is off without BALANCER_URL', () => {
      expect(parseAgentConfig({}).registration).toBeNull();
      expect(parseAgentConfig({ REGISTRATION_TOKEN: token }).registration).toBeNull();
    });

    it("derives both URLs from this machine's address when Ollama is local (a pod, a container)", () => {
      expect(parseAgentConfig({ ...base, OLLAMA_HOST: '127.0.0.1:11500', PORT: '9401' }, podIp).registration).toEqual({
        balancerUrls: ['http://balancer:11434'],
        token,
        name: 'gpu-7',
        ollamaUrl: 'http://10.244.1.17:11500',
        agentUrl: 'http://10.244.1.17:9401',
        parallel: undefined,
        maxLoadedModels: undefined,
        retryMaxMs: 30_000,
        timeoutMs: 5000,
      });
    });

    it('advertises OLLAMA_HOST itself when it names another host (compose: http://ollama-0:11434)', () => {
      const r = parseAgentConfig({ ...base, OLLAMA_HOST: 'http://ollama-0:11434' }, podIp).registration!;
      expect(r.ollamaUrl).toBe('http://ollama-0:11434');
      expect(r.agentUrl).toBe('http://10.244.1.17:9400');
    });

    it('takes the advertised URLs, several balancers (deduplicated, path prefix kept), the name and the server limits as given', () => {
      const r = parseAgentConfig(
        {
          ...base,
          BALANCER_URL: ' https://lb.example.com/ollama/ , http://10.0.0.2:11434,http://10.0.0.2:11434/ ',
          AGENT_NAME: 'edge.box-1',
          OLLAMA_ADVERTISE_URL: 'https://gpu.example.com:8443/',
          AGENT_ADVERTISE_URL: 'http://gpu.example.com:9400',
          OLLAMA_NUM_PARALLEL: '8',
          OLLAMA_MAX_LOADED_MODELS: '0',
          REGISTRATION_RETRY_MAX_MS: '5000',
        },
        () => undefined,
      ).registration!;
      expect(r).toMatchObject({
        balancerUrls: ['https://lb.example.com/ollama', 'http://10.0.0.2:11434'],
        name: 'edge.box-1',
        ollamaUrl: 'https://gpu.example.com:8443',
        agentUrl: 'http://gpu.example.com:9400',
        parallel: 8,
        maxLoadedModels: 0,
        retryMaxMs: 5000,
      });
    });

    it.each([
      [{ REGISTRATION_TOKEN: undefined }, 'REGISTRATION_TOKEN="" must be set when BALANCER_URL is'],
      [
        { REGISTRATION_TOKEN: 'too short' },
        'REGISTRATION_TOKEN="<redacted>" must be at least 16 characters with no whitespace',
      ],
      [{ BALANCER_URL: 'balancer:11434' }, 'BALANCER_URL="balancer:11434" entries must use http:// or https://'],
      [{ BALANCER_URL: 'not a url' }, 'BALANCER_URL="not a url" has an entry that is not a URL'],
      [{ BALANCER_URL: 'http://u:secret@balancer' }, 'BALANCER_URL="<redacted>" must not carry credentials'],
      [{ BALANCER_URL: ' , ' }, 'BALANCER_URL=" , " has no URL'],
      [{ AGENT_NAME: 'gpu 7' }, 'AGENT_NAME="gpu 7" must be 1-64 characters'],
      [{ HOSTNAME_LABEL: 'gpu:7' }, 'AGENT_NAME (default: the host name)="gpu:7"'],
      [
        { OLLAMA_ADVERTISE_URL: 'http://10.0.0.1:11434/api' },
        'OLLAMA_ADVERTISE_URL="http://10.0.0.1:11434/api" must not have a path',
      ],
      [{ AGENT_ADVERTISE_URL: 'gpu:9400' }, 'AGENT_ADVERTISE_URL="gpu:9400" must use http:// or https://'],
      [{ PORT: '0' }, 'AGENT_ADVERTISE_URL="" must be set when PORT=0'],
      [{ OLLAMA_NUM_PARALLEL: '0' }, 'OLLAMA_NUM_PARALLEL="0" must be an integer from 1 to 1024'],
      [{ REGISTRATION_RETRY_MAX_MS: '0' }, 'REGISTRATION_RETRY_MAX_MS="0"'],
    ])('rejects %p naming the setting', (env, message) => {
      expect(() => parseAgentConfig({ ...base, ...env }, podIp)).toThrow(message);
    });

    it('needs OLLAMA_ADVERTISE_URL when Ollama is local and there is no external address', () => {
      expect(() => parseAgentConfig(base, () => undefined)).toThrow(
        'OLLAMA_ADVERTISE_URL="" must be set: OLLAMA_HOST is local',
      );
    });

    it('never puts the token in an error message', () => {
      expect(() => parseAgentConfig({ ...base, REGISTRATION_TOKEN: 'has whitespace in it 0123456789' }, podIp)).toThrow(
        expect.objectContaining({ message: expect.not.stringContaining('whitespace in it') }),
      );
    });
  });
});
