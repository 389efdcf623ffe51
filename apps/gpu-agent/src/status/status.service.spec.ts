import type { GpuReading } from '@app/nvml';
import { isProcessListError, summariseHost, toGpuReadingDto } from './status.service';

const GiB = 1024 ** 3;
const gpu = (index: number, over: Partial<GpuReading> = {}): GpuReading => ({
  index,
  name: `GPU ${index}`,
  uuid: `GPU-${index}`,
  utilizationGpu: 10,
  memoryTotalBytes: 80 * GiB,
  memoryUsedBytes: 20 * GiB,
  memoryFreeBytes: 60 * GiB,
  processes: [],
  ...over,
});

describe('host summary: unknown readings are unknown, not zero', () => {
  it('sums free memory when every GPU reports it', () => {
    const h = summariseHost(2, [gpu(0), gpu(1, { memoryFreeBytes: 10 * GiB })].map(toGpuReadingDto));
    expect(h.memoryFreeBytes).toBe(70 * GiB);
    expect(h.leastLoadedGpu).toBe(0);
  });

  it('reports free memory as null when one GPU cannot say (MIG, a permission error)', () => {
    const h = summariseHost(2, [gpu(0), gpu(1, { memoryFreeBytes: undefined })].map(toGpuReadingDto));
    expect(h.memoryFreeBytes).toBeNull();
    expect(h.leastLoadedGpu).toBe(0);
    expect(summariseHost(0, []).memoryFreeBytes).toBeNull();
  });

  it('a process list it may not read leaves the GPU healthy and eligible', () => {
    const denied = gpu(0, {
      error: {
        code: 'NVML_ERROR_NO_PERMISSION',
        nvmlReturn: 4,
        function: 'nvmlDeviceGetComputeRunningProcesses_v3',
        message: 'Insufficient Permissions',
      },
    });
    const dto = toGpuReadingDto(denied);
    expect(dto.error).toBeNull();
    expect(dto.errorCode).toBeNull();
    expect(dto.processesError).toBe('NVML_ERROR_NO_PERMISSION: Insufficient Permissions');
    expect(summariseHost(1, [dto]).leastLoadedGpu).toBe(0);
  });

  it('any other device error still marks the GPU', () => {
    const lost = toGpuReadingDto(
      gpu(0, {
        error: {
          code: 'NVML_ERROR_GPU_IS_LOST',
          nvmlReturn: 15,
          function: 'nvmlDeviceGetTemperature',
          message: 'GPU is lost',
        },
      }),
    );
    expect(lost.error).toBe('NVML_ERROR_GPU_IS_LOST: GPU is lost');
    expect(lost.processesError).toBeUndefined();
    expect(summariseHost(1, [lost]).leastLoadedGpu).toBeNull();
    expect(isProcessListError('nvmlDeviceGetGraphicsRunningProcesses')).toBe(true);
    expect(isProcessListError(undefined)).toBe(false);
  });
});
