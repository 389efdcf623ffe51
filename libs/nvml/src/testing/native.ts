import * as path from 'path';
import { loadNvmlAddon, packageRoot } from '../addon';

/** Resets the loaded addon's NVML state (every reference dropped, library unloaded), if loaded. */
export function resetNvmlAddon(): void {
  const r = loadNvmlAddon();
  if (r.ok) r.addon.reset();
}

/**
 * Sets (or, with `value` undefined, removes) a variable in the real process environment, where the
 * loaded C library's getenv() sees it. Needed under Jest, whose `process.env` is a per-spec copy:
 * tests point the fake library at its state file (FAKE_NVML_STATE) through this. Throws if the
 * addon is not built.
 */
export function setNativeEnv(name: string, value: string | undefined): void {
  const r = loadNvmlAddon();
  if (!r.ok) throw r.error;
  r.addon.setNativeEnv(name, value);
}

/**
 * The fake libnvidia-ml.so.1 built by `npm run build:native` (libs/nvml/fake/build under the
 * package root), for tests and the demo. `v1only` lacks the versioned symbols.
 */
export function fakeNvmlLibraryPath(variant: 'default' | 'v1only' = 'default'): string {
  const dir = path.join(packageRoot(), 'libs', 'nvml', 'fake', 'build', ...(variant === 'v1only' ? ['v1only'] : []));
  return path.join(dir, 'libnvidia-ml.so.1');
}
