import { NvmlError, nvmlErrorName, toNvmlError } from './errors';
import { snapshotFromRaw } from './readers';
import { StaticGpuReader } from './testing';

describe('nvml TS face', () => {
  it('names return codes after NVML enum names', () => {
    expect(nvmlErrorName(0)).toBe('NVML_SUCCESS');
    expect(nvmlErrorName(9)).toBe('NVML_ERROR_DRIVER_NOT_LOADED');
    expect(nvmlErrorName(18)).toBe('NVML_ERROR_LIB_RM_VERSION_MISMATCH');
    expect(nvmlErrorName(12345)).toBe('NVML_ERROR_UNKNOWN');
  });

  it('turns an addon error object into an NvmlError keeping code, number and function', () => {
    const raw = Object.assign(new Error('nvmlInit_v2 failed: Driver Not Loaded'), {
      code: 'NVML_ERROR_DRIVER_NOT_LOADED',
      nvmlReturn: 9,
      function: 'nvmlInit_v2',
    });
    const e = toNvmlError(raw);
    expect(e).toBeInstanceOf(NvmlError);
    expect([e.code, e.nvmlReturn, e.function, e.message]).toEqual([
      'NVML_ERROR_DRIVER_NOT_LOADED',
      9,
      'nvmlInit_v2',
      'nvmlInit_v2 failed: Driver Not Loaded',
    ]);
    expect(toNvmlError('boom').code).toBe('NVML_ERROR_UNKNOWN');
  });

  it('converts milliwatts to watts and keeps absent fields absent', () => {
    const s = snapshotFromRaw({
      gpuCount: 1,
      libraryPath: 'x',
      symbols: [],
      gpus: [{ index: 0, powerUsageMw: 312_500, processes: [] }],
    });
    expect(s.gpus[0]).toEqual({ index: 0, powerUsageW: 312.5, processes: [] });
  });

  it('StaticGpuReader answers what it was given, and fails on demand', async () => {
    const r = new StaticGpuReader({ gpuCount: 1, gpus: [{ index: 0, uuid: 'GPU-1', processes: [] }] });
    expect((await r.read()).gpus[0].uuid).toBe('GPU-1');
    r.fail(new NvmlError('gone', 'NVML_ERROR_DRIVER_NOT_LOADED', 9));
    await expect(r.read()).rejects.toMatchObject({ code: 'NVML_ERROR_DRIVER_NOT_LOADED', nvmlReturn: 9 });
    expect(r.reads).toBe(2);
    await r.close();
    expect(r.closed).toBe(true);
  });
});
