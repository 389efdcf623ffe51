import { promises as fs, writeFileSync, renameSync } from 'fs';

/**
 * The state file read by the fake libnvidia-ml.so.1 (libs/nvml/fake). Plain `key=value` lines so the
 * C side needs no JSON parser; the fake re-reads the file (named by FAKE_NVML_STATE) on every call.
 *
 *   driver_version=550.54.15
 *   nvml_version=12.550.54.15
 *   gpu_count=2
 *   gpu.0.name=NVIDIA H100 80GB HBM3
 *   gpu.0.uuid=GPU-...
 *   gpu.0.pci_bus_id=00000000:01:00.0
 *   gpu.0.util_gpu=10              (%)
 *   gpu.0.util_memory=5            (%)
 *   gpu.0.mem_total=85899345920    (bytes)
 *   gpu.0.mem_used=...             (bytes; free = total - used - reserved)
 *   gpu.0.mem_reserved=...         (bytes)
 *   gpu.0.temperature=45           (C)
 *   gpu.0.power_usage=120000       (mW)
 *   gpu.0.power_limit=700000       (mW)
 *   gpu.0.fan_speed=30             (%; absent => NOT_SUPPORTED)
 *   gpu.0.clock_sm=1980            (MHz)
 *   gpu.0.clock_mem=2619           (MHz)
 *   gpu.0.process_count=1
 *   gpu.0.process.0.pid=1234
 *   gpu.0.process.0.used_memory=... (bytes)
 *   delay_ms=50                    (optional: nvmlDeviceGetCount* sleeps that long, a slow driver)
 *   error.nvmlInit_v2=9            (every call of that function returns 9)
 *   error.nvmlDeviceGetFanSpeed.1=3 (only for GPU index 1)
 */
export interface FakeGpuState {
  name: string;
  uuid: string;
  pciBusId?: string;
  utilGpu: number;
  utilMemory: number;
  memTotal: number;
  memUsed: number;
  memReserved?: number;
  temperature: number;
  powerUsage: number;
  powerLimit: number;
  fanSpeed?: number;
  clockSm?: number;
  clockMem?: number;
  processes?: { pid: number; usedMemory: number }[];
}

export interface FakeNvmlState {
  driverVersion?: string;
  nvmlVersion?: string;
  gpus: FakeGpuState[];
  /** NVML function name (optionally `.gpuIndex`) -> nvmlReturn_t to answer instead of success. */
  errors?: Record<string, number>;
  /** Makes nvmlDeviceGetCount* sleep this long: a slow driver, to prove reads stay off the event loop. */
  delayMs?: number;
}

export function renderFakeNvmlState(state: FakeNvmlState): string {
  const lines: string[] = [
    `driver_version=${state.driverVersion ?? '550.54.15'}`,
    `nvml_version=${state.nvmlVersion ?? '12.550.54.15'}`,
    `gpu_count=${state.gpus.length}`,
  ];
  if (state.delayMs) lines.push(`delay_ms=${Math.round(state.delayMs)}`);
  state.gpus.forEach((g, i) => {
    const p = `gpu.${i}.`;
    lines.push(
      `${p}name=${g.name}`,
      `${p}uuid=${g.uuid}`,
      `${p}pci_bus_id=${g.pciBusId ?? `00000000:${(i + 1).toString(16).padStart(2, '0').toUpperCase()}:00.0`}`,
      `${p}util_gpu=${Math.round(g.utilGpu)}`,
      `${p}util_memory=${Math.round(g.utilMemory)}`,
      `${p}mem_total=${Math.round(g.memTotal)}`,
      `${p}mem_used=${Math.round(g.memUsed)}`,
      `${p}mem_reserved=${Math.round(g.memReserved ?? 0)}`,
      `${p}temperature=${Math.round(g.temperature)}`,
      `${p}power_usage=${Math.round(g.powerUsage)}`,
      `${p}power_limit=${Math.round(g.powerLimit)}`,
    );
    if (g.fanSpeed !== undefined) lines.push(`${p}fan_speed=${Math.round(g.fanSpeed)}`);
    if (g.clockSm !== undefined) lines.push(`${p}clock_sm=${Math.round(g.clockSm)}`);
    if (g.clockMem !== undefined) lines.push(`${p}clock_mem=${Math.round(g.clockMem)}`);
    const procs = g.processes ?? [];
    lines.push(`${p}process_count=${procs.length}`);
    procs.forEach((pr, j) => {
      lines.push(`${p}process.${j}.pid=${pr.pid}`, `${p}process.${j}.used_memory=${Math.round(pr.usedMemory)}`);
    });
  });
  for (const [fn, code] of Object.entries(state.errors ?? {})) lines.push(`error.${fn}=${code}`);
  return lines.join('\n') + '\n';
}

/** Writes atomically (temp file + rename) so the fake never reads a half-written file. */
export async function writeFakeNvmlState(path: string, state: FakeNvmlState): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await fs.writeFile(tmp, renderFakeNvmlState(state));
  await fs.rename(tmp, path);
}

export function writeFakeNvmlStateSync(path: string, state: FakeNvmlState): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, renderFakeNvmlState(state));
  renameSync(tmp, path);
}
