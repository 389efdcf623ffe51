import { normalizeModelName, parseKeepAlive, resolveConfig, DEFAULT_SIM_CONFIG } from './config';

describe('sim config', () => {
  it('normalises model names like Ollama', () => {
    expect(normalizeModelName('llama3.2')).toBe('llama3.2:latest');
    expect(normalizeModelName('Llama3.2:Latest')).toBe('llama3.2:latest');
    expect(normalizeModelName('qwen2.5:7b')).toBe('qwen2.5:7b');
    expect(normalizeModelName('registry.local:5000/team/model')).toBe('registry.local:5000/team/model:latest');
  });

  it('parses keep_alive numbers (seconds) and Go durations', () => {
    expect(parseKeepAlive(undefined)).toBeUndefined();
    expect(parseKeepAlive(0)).toBe(0);
    expect(parseKeepAlive(30)).toBe(30_000);
    expect(parseKeepAlive(-1)).toBe(-1);
    expect(parseKeepAlive('5m')).toBe(300_000);
    expect(parseKeepAlive('1h30m')).toBe(5_400_000);
    expect(parseKeepAlive('250ms')).toBe(250);
    expect(parseKeepAlive('-1m')).toBe(-1);
    // A string must be a Go duration: Ollama refuses "10" (time.ParseDuration: missing unit).
    expect(parseKeepAlive('10')).toBeUndefined();
    expect(parseKeepAlive('soon')).toBeUndefined();
  });

  it('merges faults key by key and clears them with false', () => {
    const a = resolveConfig({ faults: { hang: true, delayHeadersMs: 10 } });
    const b = resolveConfig({ faults: { hang: false } }, a);
    expect(b.faults).toEqual({ delayHeadersMs: 10 });
    expect(b.tokensPerSecond).toBe(DEFAULT_SIM_CONFIG.tokensPerSecond);
  });

  it('derives memory from the NVML GPUs and rejects nonsense speeds', () => {
    const c = resolveConfig({
      nvml: {
        statePath: '/tmp/x',
        gpus: [
          { name: 'g', uuid: 'u', memTotalBytes: 8e9 },
          { name: 'g', uuid: 'v', memTotalBytes: 8e9 },
        ],
      },
    });
    expect(c.vramBytes).toBe(16e9);
    expect(() => resolveConfig({ tokensPerSecond: 0 })).toThrow(/tokensPerSecond/);
  });
});
