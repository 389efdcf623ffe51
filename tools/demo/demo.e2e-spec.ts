import { spawn } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';

const root = join(__dirname, '..', '..');
const entry = join(root, 'dist/tools/demo/main.js');

/**
 * The README's first command: the compiled demo starts the simulated fleet, gpu-agents and the
 * balancer, streams a chat through it with ollama-js, prints the URL and examples, and (in this
 * self-check mode) stops everything it started. `npm test` builds dist/ first (pretest).
 */
describe('npm run demo', () => {
  it('serves a streamed chat through the balancer to ollama-js and stops cleanly', async () => {
    expect(existsSync(entry)).toBe(true);
    const child = spawn(process.execPath, [entry], {
      env: { ...process.env, DEMO_EXIT_AFTER_CHECK: '1', DEMO_PORT: '11800', DEMO_AGENT_PORT: '9801' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(out).toContain('Ollama-compatible balancer: http://127.0.0.1:11800');
    expect(out).toMatch(/self-check: streamed chat via ollama-js, \d+ chunks: "\S+/);
    expect(out).toContain('/balancer/dashboard');
    expect(code).toBe(0);
  }, 90_000);
});
