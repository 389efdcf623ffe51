/**
 * nvmlReturn_t values: the one table of NVML's error names (the addon passes numbers only). Errors raised by this library carry `code` = NVML's own enum name
 * (`'NVML_ERROR_DRIVER_NOT_LOADED'`, `'NVML_ERROR_LIBRARY_NOT_FOUND'`...) and `nvmlReturn` = the
 * number. LIBRARY_NOT_FOUND (12) and FUNCTION_NOT_FOUND (13) are raised by our own loader, as in
 * NVIDIA's reference bindings. ADDON_NOT_LOADED is ours alone: the .node file itself is missing.
 */
export const NvmlReturn = {
  SUCCESS: 0,
  UNINITIALIZED: 1,
  INVALID_ARGUMENT: 2,
  NOT_SUPPORTED: 3,
  NO_PERMISSION: 4,
  ALREADY_INITIALIZED: 5,
  NOT_FOUND: 6,
  INSUFFICIENT_SIZE: 7,
  INSUFFICIENT_POWER: 8,
  DRIVER_NOT_LOADED: 9,
  TIMEOUT: 10,
  IRQ_ISSUE: 11,
  LIBRARY_NOT_FOUND: 12,
  FUNCTION_NOT_FOUND: 13,
  CORRUPTED_INFOROM: 14,
  GPU_IS_LOST: 15,
  RESET_REQUIRED: 16,
  OPERATING_SYSTEM: 17,
  LIB_RM_VERSION_MISMATCH: 18,
  IN_USE: 19,
  MEMORY: 20,
  NO_DATA: 21,
  VGPU_ECC_NOT_SUPPORTED: 22,
  INSUFFICIENT_RESOURCES: 23,
  FREQ_NOT_SUPPORTED: 24,
  ARGUMENT_VERSION_MISMATCH: 25,
  DEPRECATED: 26,
  NOT_READY: 27,
  GPU_NOT_FOUND: 28,
  INVALID_STATE: 29,
  RESET_TYPE_NOT_SUPPORTED: 30,
  UNKNOWN: 999,
} as const;

export type NvmlReturnName = keyof typeof NvmlReturn;

/** 'NVML_ERROR_GPU_IS_LOST' for 15, 'NVML_SUCCESS' for 0, 'NVML_ERROR_UNKNOWN' for anything unlisted. */
export function nvmlErrorName(nvmlReturn: number): string {
  if (nvmlReturn === 0) return 'NVML_SUCCESS';
  const entry = Object.entries(NvmlReturn).find(([, v]) => v === nvmlReturn);
  return `NVML_ERROR_${entry ? entry[0] : 'UNKNOWN'}`;
}

export const ADDON_NOT_LOADED = 'NVML_ADDON_NOT_LOADED';

export class NvmlError extends Error {
  override readonly name = 'NvmlError';
  /** The NVML symbol or loader step that failed. */
  readonly function?: string;
  constructor(
    message: string,
    /** 'NVML_ERROR_*' (or 'NVML_ADDON_NOT_LOADED'). */
    readonly code: string,
    /** nvmlReturn_t number; LIBRARY_NOT_FOUND (12) when the addon itself is missing. */
    readonly nvmlReturn: number,
    fn?: string,
  ) {
    super(message);
    if (fn !== undefined) this.function = fn;
  }
}

/** Normalises whatever the addon (or anything else) threw into an NvmlError. */
export function toNvmlError(e: unknown): NvmlError {
  if (e instanceof NvmlError) return e;
  if (e && typeof e === 'object') {
    const o = e as { message?: unknown; code?: unknown; nvmlReturn?: unknown; function?: unknown };
    if (typeof o.nvmlReturn === 'number') {
      // The addon sends the number only; the name comes from the table above.
      const code = typeof o.code === 'string' ? o.code : nvmlErrorName(o.nvmlReturn);
      return new NvmlError(
        typeof o.message === 'string' && o.message ? o.message : code,
        code,
        o.nvmlReturn,
        typeof o.function === 'string' ? o.function : undefined,
      );
    }
    if (typeof o.message === 'string')
      return new NvmlError(o.message, nvmlErrorName(NvmlReturn.UNKNOWN), NvmlReturn.UNKNOWN);
  }
  return new NvmlError(String(e), nvmlErrorName(NvmlReturn.UNKNOWN), NvmlReturn.UNKNOWN);
}
