export { DEFAULT_SIM_CONFIG, normalizeModelName, parseKeepAlive, type ResolvedSimConfig, type SimConfig, type SimFaults, type SimGpu, type SimModel, type SimNvmlConfig } from './config';
export { startSimServer, type SimModelStats, type SimServer, type SimServerOptions, type SimStats } from './server';
export { BUSY_MESSAGE } from './jobs';
export { nvmlStateFor } from './nvml-state';
