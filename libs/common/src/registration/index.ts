export * from './agent-registration.dto';
