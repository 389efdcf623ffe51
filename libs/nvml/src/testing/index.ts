/**
 * `@app/nvml/testing`: the NVML binding's test doubles, kept out of the production barrel. The
 * fake library's state file (the simulator writes it), the fake library's path, an in-memory
 * reader, and the process-environment and reset hooks Jest needs.
 */
export * from './fake-state';
export * from './native';
export * from './static-reader';
