import { Provider } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import { GpuReader, NvmlGpuReader } from '@app/nvml';
import { agentConfig } from '../config/agent.config';

/** Injection token for the {@link GpuReader}: NVML in production, a StaticGpuReader in unit tests. */
export const GPU_READER = Symbol('GPU_READER');

export const gpuReaderProvider: Provider = {
  provide: GPU_READER,
  inject: [agentConfig.KEY],
  useFactory: (cfg: ConfigType<typeof agentConfig>): GpuReader =>
    new NvmlGpuReader({ libraryPath: cfg.nvmlLibraryPath }),
};
