import { spawn } from 'child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { request } from './helpers';

const ROOT = resolve(__dirname, '../../..');

describe('ollama-sim CLI', () => {
  it('starts from an example config, prints its URL, serves, stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
    const cfg = JSON.parse(readFileSync(join(ROOT, 'libs/ollama-sim/examples/medium.json'), 'utf8'));
    cfg.nvml.statePath = join(dir, 'nvml');
    writeFileSync(join(dir, 'medium.json'), JSON.stringify(cfg));
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        'libs/ollama-sim/src/cli.ts',
        '--port',
        '0',
        '--config',
        join(dir, 'medium.json'),
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      const line = await new Promise<string>((res, rej) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) res(out.split('\n')[0]);
        });
        child.once('exit', (code) => rej(new Error(`exited ${code}`)));
      });
      const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)![1];
      expect(line).toBe(`ollama-sim medium listening on ${url}`);
      expect((await request(url + '/')).body).toBe('Ollama is running');
      const ps = JSON.parse((await request(url + '/api/ps')).body);
      expect(ps.models.map((m: any) => m.name)).toEqual(['llama3.2:latest']);
      expect(existsSync(cfg.nvml.statePath)).toBe(true);
      const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});
