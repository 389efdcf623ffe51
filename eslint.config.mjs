// @ts-check
import eslint from '@eslint/js';
import { readdirSync } from 'fs';
import tseslint from 'typescript-eslint';

// apps/balancer/src: data flows one way, config <- fleet <- routing <- {proxy, ollama-api} <-
// observability, with admin/ and health/ reading from the side. Each folder may import only the
// folders listed here (relative imports; the root files wire everything), so an import cycle
// between folders cannot come back. Like immich's server. A new folder goes into this table.
const BALANCER = 'apps/balancer/src';
const MAY_IMPORT = {
  config: [],
  lifecycle: [],
  http: [],
  fleet: ['config', 'shared-state'],
  'shared-state': ['config'],
  // usage: with REDIS_URL its quotas read the shared windows (SHARED_STATE, FleetModule provides it).
  usage: ['config', 'fleet', 'shared-state'],
  routing: ['config', 'lifecycle', 'fleet', 'shared-state'],
  'ollama-api': ['config', 'http', 'fleet'],
  proxy: ['config', 'lifecycle', 'http', 'fleet', 'shared-state', 'usage', 'routing', 'ollama-api'],
  observability: ['config', 'lifecycle', 'fleet', 'shared-state', 'usage', 'routing', 'ollama-api', 'proxy'],
  admin: [
    'config',
    'lifecycle',
    'http',
    'fleet',
    'shared-state',
    'usage',
    'routing',
    'ollama-api',
    'proxy',
    'observability',
  ],
  health: ['config', 'lifecycle', 'fleet', 'shared-state', 'routing'],
};
const FOLDERS = Object.keys(MAY_IMPORT);
const unplaced = readdirSync(new URL(`./${BALANCER}`, import.meta.url), { withFileTypes: true }).filter(
  (d) => d.isDirectory() && !(d.name in MAY_IMPORT),
);
if (unplaced.length > 0)
  throw new Error(
    `eslint.config.mjs: place ${unplaced.map((d) => `${BALANCER}/${d.name}/`).join(', ')} in MAY_IMPORT (which folders it may import)`,
  );
const HPM_ONLY_IN = `${BALANCER}/proxy/upstream-attempt.ts`;

/** @param {string | null} folder null for the root files (main, bootstrap, app.module): they may import any folder. */
function importRule(folder, mayUseHpm) {
  const may = folder === null ? FOLDERS : MAY_IMPORT[folder];
  const banned = FOLDERS.filter((f) => f !== folder && !may.includes(f));
  const allowed = may.length > 0 ? may.join(', ') : 'no other folder';
  const patterns =
    banned.length === 0
      ? []
      : [
          {
            group: banned.flatMap((f) => [`../${f}`, `../${f}/**`, `../../${f}`, `../../${f}/**`]),
            message: `${BALANCER}/${folder}/ may import ${allowed} (data flows one way: AGENTS.md, Layout).`,
          },
        ];
  const paths = mayUseHpm
    ? []
    : [
        {
          name: 'http-proxy-middleware',
          message: `only ${HPM_ONLY_IN} (UpstreamTransport) uses http-proxy-middleware.`,
        },
      ];
  return { 'no-restricted-imports': ['error', { paths, patterns }] };
}

const balancerImports = [
  { files: [`${BALANCER}/*.ts`], rules: importRule(null, false) },
  ...FOLDERS.map((f) => ({ files: [`${BALANCER}/${f}/**/*.ts`], rules: importRule(f, false) })),
  { files: [HPM_ONLY_IN], rules: importRule('proxy', true) },
];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'libs/nvml/build/**',
      'coverage/**',
      'bench-results/**',
      '**/*.js',
      '**/*.mjs',
    ],
  },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Type information for the few rules below that need it (projectService reads tsconfig.json).
    // Not the whole recommendedTypeChecked set: the code uses `any` on purpose at the wire edges.
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: false }],
    },
  },
  ...balancerImports,
);
