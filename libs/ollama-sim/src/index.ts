export {
  compareVersions,
  DEFAULT_SIM_CONFIG,
  defaultCapabilities,
  normalizeModelName,
  parseKeepAlive,
  ROUTE_SINCE,
  routeEnabled,
  type ResolvedSimConfig,
  type SimConfig,
  type SimFaults,
  type SimGpu,
  type SimModel,
  type SimNvmlConfig,
  type SimRoutes,
} from './config';
export { startSimServer, type SimModelStats, type SimServer, type SimServerOptions, type SimStats } from './server';
export { BUSY_MESSAGE } from './jobs';
export { nvmlStateFor } from './nvml-state';
