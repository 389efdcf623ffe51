export * from './shared-state-config';
export * from './redis-link';
export * from './shared-slots';
export * from './shared-limits';
export * from './shared-events';
