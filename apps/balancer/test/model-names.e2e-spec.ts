/**
 * Model names reach a backend the way Ollama matches them (libs/ollama-names): case-insensitively,
 * with the default tag, host and namespace filled in (types/model/name.go ParseName, and
 * getExistingName in server/routes.go). Before, the balancer compared names case-sensitively and
 * answered 404 for "Llama3.2" although its backend serves it.
 */
import { Cluster, request, startCluster } from './harness';

const LLAMA = { name: 'llama3.2:latest', sizeBytes: 2_000_000_000 };
const QWEN = { name: 'qwen2.5:7b', sizeBytes: 4_700_000_000 };

describe('model names as Ollama matches them', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster([
      { models: [LLAMA], tokensPerSecond: 2000 },
      { models: [QWEN], tokensPerSecond: 2000 },
    ]);
  });
  afterAll(async () => {
    await c?.close();
  });

  it.each([
    ['Llama3.2', 'b1'],
    ['LLAMA3.2:Latest', 'b1'],
    ['library/llama3.2', 'b1'],
    ['registry.ollama.ai/library/llama3.2:latest', 'b1'],
    ['Qwen2.5:7B', 'b2'],
  ])('%s goes to the backend that has it (%s)', async (model, backend) => {
    const r = await request(`${c.url}/api/generate`, { body: { model, prompt: 'hi', stream: false } });
    expect(r.status).toBe(200);
    expect(r.headers['x-balancer-backend']).toBe(backend);
  });

  it('a name that only looks alike is still unknown', async () => {
    const r = await request(`${c.url}/api/generate`, { body: { model: 'llama3.2:', prompt: 'hi', stream: false } });
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: "model 'llama3.2:' not found" });
  });
});
