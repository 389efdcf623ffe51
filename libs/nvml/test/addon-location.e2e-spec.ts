/**
 * The addon and the fake library are found by one path under the package root (the nearest folder
 * with a package.json), the same from the TypeScript sources (here, under ts-jest) and from the
 * compiled dist/ (a child node process, started in another working directory so the current one
 * cannot help). `npm test` builds dist/ first (pretest).
 */
import { execFileSync } from 'child_process';
import { existsSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { addonPath, loadNvmlAddon } from '@app/nvml';
import { fakeNvmlLibraryPath } from '@app/nvml/testing';

const ROOT = path.resolve(__dirname, '../../..');
const DIST = path.join(ROOT, 'dist/libs/nvml/src');

describe('NVML addon location', () => {
  it('from the sources: libs/nvml/build/Release/nvml.node under the repository root', () => {
    expect(addonPath()).toBe(path.join(ROOT, 'libs/nvml/build/Release/nvml.node'));
    expect(fakeNvmlLibraryPath()).toBe(path.join(ROOT, 'libs/nvml/fake/build/libnvidia-ml.so.1'));
    expect(fakeNvmlLibraryPath('v1only')).toBe(path.join(ROOT, 'libs/nvml/fake/build/v1only/libnvidia-ml.so.1'));
    const loaded = loadNvmlAddon();
    expect(loaded).toMatchObject({ ok: true, path: addonPath() });
  });

  it('from dist/, in another working directory: the same files, and errors named by errors.ts', () => {
    expect(existsSync(path.join(DIST, 'index.js'))).toBe(true);
    const cwd = mkdtempSync(path.join(tmpdir(), 'nvml-location-'));
    try {
      const script = `
        const nvml = require(${JSON.stringify(DIST)});
        const testing = require(${JSON.stringify(path.join(DIST, 'testing'))});
        const r = nvml.loadNvmlAddon();
        r.addon.init('/nonexistent/libnvidia-ml.so.1').catch((e) => {
          console.log(JSON.stringify({ ok: r.ok, path: r.path, fake: testing.fakeNvmlLibraryPath(),
            error: [e.constructor.name, e.code, e.nvmlReturn] }));
        });`;
      const env = { ...process.env };
      delete env.NVML_ADDON_PATH;
      const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd, env, encoding: 'utf8' }));
      expect(out).toEqual({
        ok: true,
        path: path.join(ROOT, 'libs/nvml/build/Release/nvml.node'),
        fake: path.join(ROOT, 'libs/nvml/fake/build/libnvidia-ml.so.1'),
        error: ['NvmlError', 'NVML_ERROR_LIBRARY_NOT_FOUND', 12],
      });
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('NVML_ADDON_PATH overrides it, and a wrong one fails soft naming the file', () => {
    const env = { ...process.env, NVML_ADDON_PATH: '/nonexistent/nvml.node' };
    const script = `const r = require(${JSON.stringify(DIST)}).loadNvmlAddon();
      console.log(JSON.stringify({ ok: r.ok, code: r.error.code, message: r.error.message }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8' }));
    expect(out.ok).toBe(false);
    expect(out.code).toBe('NVML_ADDON_NOT_LOADED');
    expect(out.message).toContain('/nonexistent/nvml.node is missing');
  });
});
