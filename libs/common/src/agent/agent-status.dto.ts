// class-transformer's @Type reads design metadata: make sure the polyfill is there even outside Nest.
import 'reflect-metadata';
import { plainToInstance, Type } from 'class-transformer';
import {
  IsArray,
  IsBoolean,
  IsDateString,
  IsIn,
  IsInt,
  IsNumber,
  IsOptional,
  IsString,
  Max,
  Min,
  ValidateNested,
  validateSync,
  ValidationError,
} from 'class-validator';

/**
 * GET /status of the gpu-agent, as the balancer consumes it. Optional GPU fields are absent when
 * NVML answered NOT_SUPPORTED (a fanless board has no fanSpeedPercent), never zero.
 */
export class GpuProcessDto {
  @IsInt() @Min(0) pid!: number;
  @IsNumber() @Min(0) usedMemoryBytes!: number;
}

export class GpuReadingDto {
  @IsInt() @Min(0) index!: number;
  /** '' when NVML could not give it (a GPU whose handle failed: see `error`). */
  @IsString() name!: string;
  @IsString() uuid!: string;
  @IsOptional() @IsString() pciBusId?: string;
  @IsOptional() @IsNumber() @Min(0) @Max(100) utilizationGpu?: number;
  @IsOptional() @IsNumber() @Min(0) @Max(100) utilizationMemory?: number;
  @IsOptional() @IsNumber() @Min(0) memoryTotalBytes?: number;
  @IsOptional() @IsNumber() @Min(0) memoryUsedBytes?: number;
  @IsOptional() @IsNumber() @Min(0) memoryFreeBytes?: number;
  @IsOptional() @IsNumber() @Min(0) memoryReservedBytes?: number;
  @IsOptional() @IsNumber() temperatureC?: number;
  @IsOptional() @IsNumber() @Min(0) powerUsageW?: number;
  @IsOptional() @IsNumber() @Min(0) powerLimitW?: number;
  @IsOptional() @IsNumber() @Min(0) fanSpeedPercent?: number;
  @IsOptional() @IsNumber() @Min(0) smClockMhz?: number;
  @IsOptional() @IsNumber() @Min(0) memClockMhz?: number;
  @IsArray() @ValidateNested({ each: true }) @Type(() => GpuProcessDto) processes!: GpuProcessDto[];
  /** Why this GPU could not be fully read (e.g. "NVML_ERROR_GPU_IS_LOST: ..."); null when fine. */
  @IsOptional() @IsString() error?: string | null;
  /** NVML code of that error, e.g. 'NVML_ERROR_GPU_IS_LOST'. */
  @IsOptional() @IsString() errorCode?: string | null;
  /**
   * Why the process list could not be read (e.g. NVML_ERROR_NO_PERMISSION in a container): the GPU
   * itself is fine and `error` stays null; `processes` is then empty because unknown.
   */
  @IsOptional() @IsString() processesError?: string | null;
}

export class NvmlStatusDto {
  @IsBoolean() available!: boolean;
  @IsOptional() @IsString() error!: string | null;
  /** 'NVML_ERROR_DRIVER_NOT_LOADED', 'NVML_ERROR_LIBRARY_NOT_FOUND', 'NVML_ADDON_NOT_LOADED', ... */
  @IsOptional() @IsString() code?: string | null;
  @IsOptional() @IsInt() nvmlReturn?: number | null;
  @IsOptional() @IsString() driverVersion?: string;
  @IsOptional() @IsString() nvmlVersion?: string;
}

export class HottestGpuDto {
  @IsInt() @Min(0) index!: number;
  @IsNumber() temperatureC!: number;
}

export class HostSummaryDto {
  @IsInt() @Min(0) gpuCount!: number;
  @IsOptional() @IsNumber() meanUtilizationGpu!: number | null;
  @IsNumber() @Min(0) memoryTotalBytes!: number;
  @IsNumber() @Min(0) memoryUsedBytes!: number;
  /**
   * Free memory over the GPUs; null when any GPU's free memory is unknown (MIG, a permission error):
   * unknown is not zero (an agent before this change sent 0).
   */
  @IsOptional() @IsNumber() @Min(0) memoryFreeBytes!: number | null;
  @IsOptional() @ValidateNested() @Type(() => HottestGpuDto) hottestGpu!: HottestGpuDto | null;
  /** Index of the GPU with the most free memory among readable GPUs. */
  @IsOptional() @IsInt() @Min(0) leastLoadedGpu!: number | null;
}

export class OllamaLoadedModelDto {
  @IsString() name!: string;
  @IsString() model!: string;
  @IsNumber() @Min(0) size!: number;
  @IsNumber() @Min(0) sizeVram!: number;
  @IsOptional() @IsString() expiresAt!: string | null;
  @IsOptional() @IsString() digest?: string;
}

export class OllamaModelDto {
  @IsString() name!: string;
  @IsNumber() @Min(0) size!: number;
}

export class OllamaStatusDto {
  @IsString() url!: string;
  @IsBoolean() reachable!: boolean;
  @IsOptional() @IsString() error!: string | null;
  @IsOptional() @IsDateString() checkedAt!: string | null;
  @IsArray() @ValidateNested({ each: true }) @Type(() => OllamaLoadedModelDto) loaded!: OllamaLoadedModelDto[];
  @IsArray() @ValidateNested({ each: true }) @Type(() => OllamaModelDto) models!: OllamaModelDto[];
}

/** The agent's registration with one balancer (BALANCER_URL), when registration is on. */
export class RegistrationLinkDto {
  @IsString() balancerUrl!: string;
  @IsIn(['registering', 'registered', 'retrying', 'stopped']) state!:
    'registering' | 'registered' | 'retrying' | 'stopped';
  @IsOptional() @IsString() lastError!: string | null;
  @IsOptional() @IsDateString() lastAcceptedAt!: string | null;
  @IsInt() @Min(0) failures!: number;
  @IsOptional() @IsInt() @Min(1) heartbeatIntervalMs!: number | null;
  @IsOptional() @IsInt() @Min(1) ttlMs!: number | null;
}

export class AgentStatusDto {
  @IsString() hostname!: string;
  @IsString() agentVersion!: string;
  /** ISO time of the latest NVML reading (the agent's start time until the first one). */
  @IsDateString() collectedAt!: string;
  /** Age of that reading when this status was served; -1 when there has been none. */
  @IsNumber() readingAgeMs!: number;
  @ValidateNested() @Type(() => NvmlStatusDto) nvml!: NvmlStatusDto;
  @IsArray() @ValidateNested({ each: true }) @Type(() => GpuReadingDto) gpus!: GpuReadingDto[];
  @ValidateNested() @Type(() => HostSummaryDto) host!: HostSummaryDto;
  @ValidateNested() @Type(() => OllamaStatusDto) ollama!: OllamaStatusDto;
  /** One entry per BALANCER_URL; null when the agent does not register itself. */
  @IsOptional() @IsArray() @ValidateNested({ each: true }) @Type(() => RegistrationLinkDto) registration?:
    RegistrationLinkDto[] | null;
}

function describeErrors(errors: ValidationError[], prefix = ''): string[] {
  return errors.flatMap((e) => {
    const at = prefix ? `${prefix}.${e.property}` : e.property;
    const own = Object.values(e.constraints ?? {}).map((m) => `${at}: ${m}`);
    return [...own, ...describeErrors(e.children ?? [], at)];
  });
}

/**
 * Validates an agent's /status body. Unknown fields are stripped (whitelist), so newer agents
 * stay readable; a wrong or missing known field at any depth is an error naming its path.
 */
export function parseAgentStatus(json: unknown): { ok: true; value: AgentStatusDto } | { ok: false; error: string } {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { ok: false, error: 'agent status must be a JSON object' };
  }
  const value = plainToInstance(AgentStatusDto, json);
  const errors = validateSync(value, { whitelist: true, forbidUnknownValues: true });
  if (errors.length) return { ok: false, error: describeErrors(errors).join('; ') };
  return { ok: true, value };
}
