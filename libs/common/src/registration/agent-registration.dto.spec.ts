import { httpBaseUrlProblem, parseAgentRegistration, parseAgentRegistrationAccepted } from './agent-registration.dto';

describe('AgentRegistrationDto', () => {
  const good = {
    name: 'gpu-node-7',
    ollamaUrl: 'http://10.0.0.7:11434',
    agentUrl: 'http://10.0.0.7:9400',
    parallel: 4,
    maxLoadedModels: 2,
    agentVersion: '0.1.0',
  };

  it('accepts a full registration and a minimal one', () => {
    expect(parseAgentRegistration(good)).toEqual({ ok: true, value: expect.objectContaining(good) });
    expect(parseAgentRegistration({ name: 'a', ollamaUrl: 'https://ollama.example.com' }).ok).toBe(true);
    expect(parseAgentRegistration({ name: 'a', ollamaUrl: 'http://[fd00::7]:11434/' }).ok).toBe(true);
  });

  it.each([
    [null, 'a registration must be a JSON object'],
    [[good], 'a registration must be a JSON object'],
    [{ ...good, name: 'gpu node' }, 'name must be 1-64 characters'],
    [{ ...good, name: 'x'.repeat(65) }, 'name must be 1-64 characters'],
    [{ ...good, name: 7 }, 'name must be a string'],
    [{ ...good, ollamaUrl: 'ftp://10.0.0.7' }, 'ollamaUrl must use http:// or https://'],
    [{ ...good, ollamaUrl: 'http://user:pw@10.0.0.7:11434' }, 'ollamaUrl must not carry credentials'],
    [{ ...good, ollamaUrl: 'http://10.0.0.7:11434/api' }, 'ollamaUrl must not have a path'],
    [{ ...good, ollamaUrl: 'http://10.0.0.7:11434/?x=1' }, 'ollamaUrl must not have a query or fragment'],
    [{ ...good, ollamaUrl: '10.0.0.7:11434' }, 'ollamaUrl is not a URL'],
    [{ ...good, ollamaUrl: 'ollama-0:11434' }, 'ollamaUrl must use http:// or https://'],
    [{ ...good, ollamaUrl: undefined }, 'ollamaUrl must be a URL'],
    [{ ...good, agentUrl: 'javascript:alert(1)' }, 'agentUrl must use http:// or https://'],
    [{ ...good, parallel: 0 }, 'parallel must not be less than 1'],
    [{ ...good, parallel: '4' }, 'parallel must be an integer number'],
    [{ ...good, maxLoadedModels: -1 }, 'maxLoadedModels must not be less than 0'],
    [{ ...good, ttlMs: 5 }, 'property ttlMs should not exist'],
  ])('refuses %j naming the field', (body, message) => {
    const r = parseAgentRegistration(body);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toContain(message);
  });

  it('httpBaseUrlProblem says why', () => {
    expect(httpBaseUrlProblem('http://ollama-0:11434')).toBeNull();
    expect(httpBaseUrlProblem('not a url')).toBe('is not a URL');
    expect(httpBaseUrlProblem('http://a:11434#x')).toBe('must not have a query or fragment');
  });
});

describe('AgentRegistrationAcceptedDto', () => {
  it('reads the answer and drops fields a newer balancer may add', () => {
    const r = parseAgentRegistrationAccepted({
      name: 'gpu-node-7',
      heartbeatIntervalMs: 5000,
      ttlMs: 15000,
      replica: 'b',
    });
    expect(r).toEqual({ ok: true, value: { name: 'gpu-node-7', heartbeatIntervalMs: 5000, ttlMs: 15000 } });
  });

  it('refuses an answer without a heartbeat interval', () => {
    const r = parseAgentRegistrationAccepted({ name: 'gpu-node-7', ttlMs: 15000 });
    expect(!r.ok && r.error).toContain('heartbeatIntervalMs must be an integer number');
  });
});
