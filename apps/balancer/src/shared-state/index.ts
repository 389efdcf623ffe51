export * from '../config/shared-state-config';
export * from './redis-link';
export * from './shared-slots';
export * from './shared-limits';
export * from './shared-events';
export * from './shared-state';
