import { Inject, Injectable } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import { HealthIndicatorService } from '@nestjs/terminus';
import { agentConfig } from '../config/agent.config';
import { GpuStateService } from '../nvml/gpu-state.service';

@Injectable()
export class NvmlHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly gpus: GpuStateService,
    @Inject(agentConfig.KEY) private readonly cfg: ConfigType<typeof agentConfig>,
  ) {}

  /** Down while NVML fails, before the first reading, or when readings have stopped coming (a hung call). */
  check(key = 'nvml') {
    const indicator = this.health.check(key);
    const { snapshot, failure } = this.gpus;
    if (failure) return indicator.down({ error: failure.message, code: failure.code, nvmlReturn: failure.nvmlReturn });
    if (!snapshot) return indicator.down({ error: 'no NVML reading yet' });
    const ageMs = Date.now() - snapshot.collectedAt.getTime();
    const staleAfterMs = Math.max(15_000, 5 * this.cfg.nvmlPollIntervalMs);
    if (ageMs > staleAfterMs) return indicator.down({ error: `latest NVML reading is ${ageMs} ms old`, ageMs });
    return indicator.up({ gpuCount: snapshot.gpuCount, driverVersion: snapshot.driverVersion ?? null, ageMs });
  }
}
