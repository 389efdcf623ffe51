import type { Config } from 'jest';

// One Jest config for every app and lib. Unit specs sit beside the code (*.spec.ts);
// end-to-end specs live in apps/<app>/test and libs/<lib>/test (*.e2e-spec.ts).
const config: Config = {
  rootDir: '.',
  moduleFileExtensions: ['js', 'json', 'ts'],
  testRegex: '.*\\.(spec|e2e-spec)\\.ts$',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.spec.json' }] },
  testEnvironment: 'node',
  testPathIgnorePatterns: ['/node_modules/', '/dist/', '/libs/nvml/build/'],
  moduleNameMapper: {
    '^@app/common(|/.*)$': '<rootDir>/libs/common/src$1',
    '^@app/nvml(|/.*)$': '<rootDir>/libs/nvml/src$1',
    '^@app/ollama-sim(|/.*)$': '<rootDir>/libs/ollama-sim/src$1',
    '^@app/ollama-names(|/.*)$': '<rootDir>/libs/ollama-names/src$1',
  },
  testTimeout: 60_000,
};

export default config;
