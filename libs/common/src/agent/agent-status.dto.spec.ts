import { AgentStatusDto, parseAgentStatus } from './agent-status.dto';

function validStatus(): Record<string, any> {
  return {
    hostname: 'gpu-node-1',
    agentVersion: '0.1.0',
    collectedAt: '2026-01-01T00:00:00.000Z',
    readingAgeMs: 120,
    nvml: { available: true, error: null, code: null, driverVersion: '550.54.15', nvmlVersion: '12.550.54.15' },
    gpus: [
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        uuid: 'GPU-1',
        pciBusId: '00000000:01:00.0',
        utilizationGpu: 37,
        memoryTotalBytes: 100,
        memoryUsedBytes: 40,
        memoryFreeBytes: 60,
        temperatureC: 51,
        processes: [{ pid: 4242, usedMemoryBytes: 10 }],
        error: null,
      },
    ],
    host: {
      gpuCount: 1,
      meanUtilizationGpu: 37,
      memoryTotalBytes: 100,
      memoryUsedBytes: 40,
      memoryFreeBytes: 60,
      hottestGpu: { index: 0, temperatureC: 51 },
      leastLoadedGpu: 0,
    },
    ollama: {
      url: 'http://127.0.0.1:11434',
      reachable: true,
      error: null,
      checkedAt: '2026-01-01T00:00:00.000Z',
      loaded: [{ name: 'llama3.2:latest', model: 'llama3.2:latest', size: 10, sizeVram: 10, expiresAt: null }],
      models: [{ name: 'llama3.2:latest', size: 10 }],
    },
  };
}

describe('parseAgentStatus', () => {
  it('accepts a valid status and returns class instances, dropping unknown fields', () => {
    const r = parseAgentStatus({ ...validStatus(), somethingNew: 1 });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toBeInstanceOf(AgentStatusDto);
    expect(r.value.gpus[0].processes[0].pid).toBe(4242);
    expect(r.value.host.hottestGpu).toEqual({ index: 0, temperatureC: 51 });
    expect(r.value).not.toHaveProperty('somethingNew');
  });

  it('accepts NVML unavailable with no GPUs and null summaries', () => {
    const s = validStatus();
    s.nvml = { available: false, error: 'nvmlInit_v2 failed: Driver Not Loaded', code: 'NVML_ERROR_DRIVER_NOT_LOADED' };
    s.gpus = [];
    s.host = {
      gpuCount: 0,
      meanUtilizationGpu: null,
      memoryTotalBytes: 0,
      memoryUsedBytes: 0,
      memoryFreeBytes: 0,
      hottestGpu: null,
      leastLoadedGpu: null,
    };
    expect(parseAgentStatus(s).ok).toBe(true);
  });

  it.each([
    ['a nested GPU process field', (s: any) => (s.gpus[0].processes[0].pid = 'x'), /gpus\.0\.processes\.0\.pid/],
    ['a GPU utilisation out of range', (s: any) => (s.gpus[0].utilizationGpu = 140), /gpus\.0\.utilizationGpu/],
    ['a missing uuid', (s: any) => delete s.gpus[0].uuid, /gpus\.0\.uuid/],
    [
      'the hottest GPU temperature',
      (s: any) => (s.host.hottestGpu.temperatureC = 'hot'),
      /host\.hottestGpu\.temperatureC/,
    ],
    ['a loaded model size', (s: any) => (s.ollama.loaded[0].sizeVram = -1), /ollama\.loaded\.0\.sizeVram/],
    ['nvml.available', (s: any) => (s.nvml.available = 'yes'), /nvml\.available/],
    ['collectedAt', (s: any) => (s.collectedAt = 'yesterday'), /collectedAt/],
  ])('rejects %s, naming its path', (_what, mutate, path) => {
    const s = validStatus();
    mutate(s);
    const r = parseAgentStatus(s);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(path);
  });

  it('rejects non-objects', () => {
    expect(parseAgentStatus(null)).toEqual({ ok: false, error: 'agent status must be a JSON object' });
    expect(parseAgentStatus([1]).ok).toBe(false);
  });
});
