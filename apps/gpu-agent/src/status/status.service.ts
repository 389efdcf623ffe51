import { Inject, Injectable } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import type { AgentStatusDto, GpuReadingDto, HostSummaryDto } from '@app/common';
import type { GpuReading } from '@app/nvml';
import { agentConfig } from '../config/agent.config';
import { GpuStateService } from '../nvml/gpu-state.service';
import { OllamaStateService } from '../ollama/ollama-state.service';
import { RegistrationService } from '../registration/registration.service';
import { AGENT_VERSION } from '../version';

const OPTIONAL_FIELDS = [
  'pciBusId',
  'utilizationGpu',
  'utilizationMemory',
  'memoryTotalBytes',
  'memoryUsedBytes',
  'memoryFreeBytes',
  'memoryReservedBytes',
  'temperatureC',
  'powerUsageW',
  'powerLimitW',
  'fanSpeedPercent',
  'smClockMhz',
  'memClockMhz',
] as const;

export function toGpuReadingDto(g: GpuReading): GpuReadingDto {
  const out: Record<string, unknown> = { index: g.index, name: g.name ?? '', uuid: g.uuid ?? '' };
  for (const k of OPTIONAL_FIELDS) if (g[k] !== undefined) out[k] = g[k];
  out.processes = g.processes.map((p) => ({ pid: p.pid, usedMemoryBytes: p.usedMemoryBytes ?? 0 }));
  // A process list we may not read (NO_PERMISSION in a container) says nothing about the GPU itself.
  const processesOnly = g.error !== undefined && isProcessListError(g.error.function);
  out.error = g.error && !processesOnly ? `${g.error.code}: ${g.error.message}` : null;
  out.errorCode = g.error && !processesOnly ? g.error.code : null;
  if (processesOnly) out.processesError = `${g.error!.code}: ${g.error!.message}`;
  return out as unknown as GpuReadingDto;
}

/** NVML's process-list calls (nvmlDeviceGetComputeRunningProcesses, _v2, _v3, the graphics ones). */
export function isProcessListError(fn: string | undefined): boolean {
  return fn !== undefined && /RunningProcesses/.test(fn);
}

/** Host-wide summary; GPUs marked with an error are left out of the "least loaded" choice. */
export function summariseHost(gpuCount: number, gpus: GpuReadingDto[]): HostSummaryDto {
  const sum = (f: (g: GpuReadingDto) => number | undefined) => gpus.reduce((a, g) => a + (f(g) ?? 0), 0);
  const utils = gpus.map((g) => g.utilizationGpu).filter((u): u is number => u !== undefined);
  const hot = gpus
    .filter((g) => g.temperatureC !== undefined)
    .reduce<GpuReadingDto | null>((a, g) => (a === null || g.temperatureC! > a.temperatureC! ? g : a), null);
  // Most free memory first (what a model load needs), then lower utilisation.
  const candidates = gpus.filter((g) => !g.error && g.memoryFreeBytes !== undefined);
  candidates.sort(
    (a, b) => b.memoryFreeBytes! - a.memoryFreeBytes! || (a.utilizationGpu ?? 0) - (b.utilizationGpu ?? 0),
  );
  return {
    gpuCount,
    meanUtilizationGpu: utils.length ? utils.reduce((a, b) => a + b, 0) / utils.length : null,
    memoryTotalBytes: sum((g) => g.memoryTotalBytes),
    memoryUsedBytes: sum((g) => g.memoryUsedBytes),
    // Unknown is not zero: one GPU without a free-memory reading (MIG, an error) makes the total unknown.
    memoryFreeBytes:
      gpus.length > 0 && gpus.every((g) => g.memoryFreeBytes !== undefined) ? sum((g) => g.memoryFreeBytes) : null,
    hottestGpu: hot ? { index: hot.index, temperatureC: hot.temperatureC! } : null,
    leastLoadedGpu: candidates.length ? candidates[0].index : null,
  };
}

@Injectable()
export class StatusService {
  private readonly startedAt = new Date();

  constructor(
    private readonly gpus: GpuStateService,
    private readonly ollama: OllamaStateService,
    private readonly registration: RegistrationService,
    @Inject(agentConfig.KEY) private readonly cfg: ConfigType<typeof agentConfig>,
  ) {}

  status(now = new Date()): AgentStatusDto {
    const snap = this.gpus.snapshot;
    const failure = this.gpus.failure;
    const gpus = snap ? snap.gpus.map(toGpuReadingDto) : [];
    const o = this.ollama.state;
    return {
      hostname: this.cfg.hostnameLabel,
      agentVersion: AGENT_VERSION,
      collectedAt: (snap?.collectedAt ?? this.startedAt).toISOString(),
      readingAgeMs: snap ? Math.max(0, now.getTime() - snap.collectedAt.getTime()) : -1,
      nvml: {
        available: this.gpus.available,
        error: failure ? failure.message : snap ? null : 'no NVML reading yet',
        code: failure ? failure.code : null,
        nvmlReturn: failure ? failure.nvmlReturn : null,
        ...(snap?.driverVersion !== undefined && { driverVersion: snap.driverVersion }),
        ...(snap?.nvmlVersion !== undefined && { nvmlVersion: snap.nvmlVersion }),
      },
      gpus,
      host: summariseHost(snap ? snap.gpuCount : 0, gpus),
      ollama: {
        url: this.ollama.url,
        reachable: o.reachable,
        error: o.error,
        checkedAt: o.checkedAt ? o.checkedAt.toISOString() : null,
        loaded: o.loaded,
        models: o.models,
      },
      registration: this.registration.state(),
    };
  }
}
