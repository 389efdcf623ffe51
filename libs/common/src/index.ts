export * from './agent';
export * from './registration';
