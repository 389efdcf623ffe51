import { Inject, Injectable } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import { Gauge, Registry } from 'prom-client';
import type { GpuReading } from '@app/nvml';
import { agentConfig } from '../config/agent.config';
import { GpuStateService } from '../nvml/gpu-state.service';
import { OllamaStateService } from '../ollama/ollama-state.service';

const MiB = 1024 * 1024;
// dcgm-exporter's label set, so existing Grafana dashboards work unchanged.
const GPU_LABELS = ['gpu', 'UUID', 'pci_bus_id', 'device', 'modelName', 'Hostname'] as const;
type GpuLabel = (typeof GPU_LABELS)[number];

/** dcgm-exporter field name -> how to read it from a GPU reading (units as dcgm-exporter gives them). */
const DCGM_GAUGES: [string, string, (g: GpuReading) => number | undefined][] = [
  ['DCGM_FI_DEV_GPU_UTIL', 'GPU utilization (in %).', (g) => g.utilizationGpu],
  ['DCGM_FI_DEV_MEM_COPY_UTIL', 'Memory utilization (in %).', (g) => g.utilizationMemory],
  ['DCGM_FI_DEV_FB_FREE', 'Framebuffer memory free (in MiB).', (g) => mib(g.memoryFreeBytes)],
  ['DCGM_FI_DEV_FB_USED', 'Framebuffer memory used (in MiB).', (g) => mib(g.memoryUsedBytes)],
  ['DCGM_FI_DEV_FB_RESERVED', 'Framebuffer memory reserved (in MiB).', (g) => mib(g.memoryReservedBytes)],
  ['DCGM_FI_DEV_GPU_TEMP', 'GPU temperature (in C).', (g) => g.temperatureC],
  ['DCGM_FI_DEV_POWER_USAGE', 'Power draw (in W).', (g) => g.powerUsageW],
  ['DCGM_FI_DEV_SM_CLOCK', 'SM clock frequency (in MHz).', (g) => g.smClockMhz],
  ['DCGM_FI_DEV_MEM_CLOCK', 'Memory clock frequency (in MHz).', (g) => g.memClockMhz],
  ['DCGM_FI_DEV_FAN_SPEED', 'Fan speed (in %).', (g) => g.fanSpeedPercent],
];

function mib(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : Math.floor(bytes / MiB);
}

/**
 * Prometheus exposition on a registry of its own. Gauges are filled from the latest poll at scrape
 * time, so a GPU or model that went away disappears from the output instead of keeping a stale value.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  private readonly dcgm: { read: (g: GpuReading) => number | undefined; gauge: Gauge<GpuLabel> }[];
  private readonly nvmlUp: Gauge;
  private readonly gpuError: Gauge<GpuLabel | 'code'>;
  private readonly gpuCount: Gauge;
  private readonly readingAge: Gauge;
  private readonly ollamaUp: Gauge;
  private readonly modelLoaded: Gauge<'model'>;
  private readonly modelVram: Gauge<'model'>;
  private readonly modelSize: Gauge<'model'>;

  constructor(
    private readonly gpus: GpuStateService,
    private readonly ollama: OllamaStateService,
    @Inject(agentConfig.KEY) private readonly cfg: ConfigType<typeof agentConfig>,
  ) {
    const r = [this.registry];
    this.dcgm = DCGM_GAUGES.map(([name, help, read]) => ({
      read,
      gauge: new Gauge({ name, help, labelNames: GPU_LABELS, registers: r }),
    }));
    this.nvmlUp = new Gauge({
      name: 'gpu_agent_nvml_up',
      help: '1 when the latest NVML poll succeeded.',
      registers: r,
    });
    this.gpuError = new Gauge({
      name: 'gpu_agent_gpu_error',
      help: 'NVML return code of a per-GPU failure (GPU lost, no permission...); absent when the GPU reads fine.',
      labelNames: [...GPU_LABELS, 'code'],
      registers: r,
    });
    this.gpuCount = new Gauge({ name: 'gpu_agent_gpu_count', help: 'GPUs NVML reports.', registers: r });
    this.readingAge = new Gauge({
      name: 'gpu_agent_nvml_reading_age_seconds',
      help: 'Age of the latest successful NVML reading.',
      registers: r,
    });
    this.ollamaUp = new Gauge({
      name: 'ollama_up',
      help: '1 when the local Ollama answered the latest poll.',
      registers: r,
    });
    this.modelLoaded = new Gauge({
      name: 'ollama_model_loaded',
      help: '1 for each model Ollama has loaded (/api/ps).',
      labelNames: ['model'],
      registers: r,
    });
    this.modelVram = new Gauge({
      name: 'ollama_model_vram_bytes',
      help: 'VRAM a loaded model occupies (size_vram).',
      labelNames: ['model'],
      registers: r,
    });
    this.modelSize = new Gauge({
      name: 'ollama_model_size_bytes',
      help: 'Total size of a loaded model (size).',
      labelNames: ['model'],
      registers: r,
    });
  }

  private refresh(): void {
    for (const m of this.registry.getMetricsAsArray()) (m as unknown as Gauge).reset();
    const snap = this.gpus.snapshot;
    this.nvmlUp.set(this.gpus.available ? 1 : 0);
    if (snap) {
      this.gpuCount.set(snap.gpuCount);
      this.readingAge.set(Math.max(0, (Date.now() - snap.collectedAt.getTime()) / 1000));
      for (const g of snap.gpus) {
        const labels: Record<GpuLabel, string> = {
          gpu: String(g.index),
          UUID: g.uuid ?? '',
          pci_bus_id: g.pciBusId ?? '',
          device: `nvidia${g.index}`,
          modelName: g.name ?? '',
          Hostname: this.cfg.hostnameLabel,
        };
        for (const { read, gauge } of this.dcgm) {
          const v = read(g);
          if (v !== undefined) gauge.set(labels, v);
        }
        if (g.error) this.gpuError.set({ ...labels, code: g.error.code }, g.error.nvmlReturn);
      }
    }
    const o = this.ollama.state;
    this.ollamaUp.set(o.reachable ? 1 : 0);
    for (const m of o.loaded) {
      this.modelLoaded.set({ model: m.name }, 1);
      this.modelVram.set({ model: m.name }, m.sizeVram);
      this.modelSize.set({ model: m.name }, m.size);
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    this.refresh();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
