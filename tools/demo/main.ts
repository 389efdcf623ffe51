import { Ollama } from 'ollama';
import { startDemoCluster } from './cluster';

/**
 * `npm run demo`: the balancer in front of three simulated Ollama servers, each with a gpu-agent
 * over the fake NVML library, on fixed local ports. Ctrl-C stops everything it started.
 *   DEMO_PORT (default 11500) for the balancer; servers on DEMO_PORT+1.., agents on 9401..
 *   DEMO_EXIT_AFTER_CHECK=1 runs the self-check and exits (used by the tests).
 */
async function main(): Promise<void> {
  const port = Number(process.env.DEMO_PORT ?? 11500);
  const agentBase = Number(process.env.DEMO_AGENT_PORT ?? 9401);
  if (!Number.isInteger(port) || port < 1 || port > 65000) {
    console.error(`Invalid DEMO_PORT=${JSON.stringify(process.env.DEMO_PORT)}: must be a port number`);
    process.exit(2);
  }
  const exitAfter = process.env.DEMO_EXIT_AFTER_CHECK === '1';
  console.log('Starting 3 simulated Ollama servers, 3 gpu-agents (fake NVML) and the balancer...');
  const cluster = await startDemoCluster({ balancer: port, simBase: port + 1, agentBase }, { quiet: exitAfter });
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await cluster.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  // Self-check: a streamed chat through the balancer with the real ollama-js client.
  const ollama = new Ollama({ host: cluster.url });
  const stream = await ollama.chat({
    model: 'llama3.2',
    messages: [{ role: 'user', content: 'Say hello to the fleet.' }],
    stream: true,
    options: { num_predict: 12 },
  });
  let text = '';
  let chunks = 0;
  for await (const part of stream) {
    text += part.message.content;
    chunks++;
  }
  const u = cluster.url;
  console.log(`
Ollama-compatible balancer: ${u}
  backends: gpu-fast (2x H100, llama3.2 + qwen2.5:7b + nomic-embed-text), gpu-medium (L40S, llama3.2 + mistral:7b), gpu-slow (A4000, llama3.2 + nomic-embed-text)
  self-check: streamed chat via ollama-js, ${chunks} chunks: "${text.trim()}"

Try it:
  curl ${u}/api/chat -d '{"model":"llama3.2","messages":[{"role":"user","content":"Why is the sky blue?"}]}'
  curl -i ${u}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"qwen2.5:7b","stream":true,"messages":[{"role":"user","content":"hi"}]}'
  node -e "const {Ollama}=require('ollama');(async()=>{for await(const p of await new Ollama({host:'${u}'}).chat({model:'llama3.2',messages:[{role:'user',content:'hi'}],stream:true}))process.stdout.write(p.message.content)})()"
  node -e "const OpenAI=require('openai');new OpenAI({baseURL:'${u}/v1',apiKey:'x'}).chat.completions.create({model:'mistral:7b',messages:[{role:'user',content:'hi'}]}).then(r=>console.log(r.choices[0].message.content))"
  OLLAMA_HOST=${u} ollama list        # the ollama CLI, if installed

See it:
  dashboard  ${u}/balancer/dashboard
  status     ${u}/balancer/status
  metrics    ${u}/metrics           (agents: http://127.0.0.1:${agentBase}/metrics ...)
  health     ${u}/health/ready

Ctrl-C stops everything.`);
  if (exitAfter) await stop(0);
}

main().catch((e) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exit(1);
});
