export * from './agent-status.dto';
