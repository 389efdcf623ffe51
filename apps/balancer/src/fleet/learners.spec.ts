import { OutputLengthLearner, PrefillLearner, queueWaitMs, RoomLearner, SlotLearner } from './learners';

/**
 * A miniature Ollama runner with `slots` parallel sequences and a FIFO queue: feeds a SlotLearner
 * exactly the counters a real one would report (queue wait, run time) for requests of `runMs` each.
 */
function simulateRunner(slots: number, arrivals: number[], runMs: number, learner: SlotLearner): void {
  const slotFree = Array.from({ length: slots }, () => 0);
  const jobs = arrivals.map((at) => {
    slotFree.sort((a, b) => a - b);
    const start = Math.max(at, slotFree[0]);
    slotFree[0] = start + runMs;
    return { at, start, end: start + runMs };
  });
  // Replay in time order: dispatches and completions interleaved.
  const events = [
    ...jobs.map((j, i) => ({ t: j.at, kind: 'begin' as const, i })),
    ...jobs.map((j, i) => ({ t: j.end, kind: 'end' as const, i })),
  ].sort((a, b) => a.t - b.t || (a.kind === 'end' ? -1 : 1));
  const samples = new Map<number, ReturnType<SlotLearner['begin']>>();
  for (const e of events) {
    if (e.kind === 'begin') samples.set(e.i, learner.begin(e.t));
    else learner.finish({ sample: samples.get(e.i)!, queueWaitMs: jobs[e.i].start - jobs[e.i].at, runMs }, e.t);
  }
}

describe('queueWaitMs', () => {
  it('is what the total leaves after load, prompt evaluation and generation', () => {
    expect(queueWaitMs(2_000e6, 500e6, 100e6, 900e6)).toBe(500);
    expect(queueWaitMs(1_000e6, undefined, 100e6, 900e6)).toBe(0);
    expect(queueWaitMs(undefined, 1, 1, 1)).toBeNull();
    expect(queueWaitMs(1e6, 0, undefined, 1)).toBeNull();
  });
});

describe('SlotLearner', () => {
  it("starts from Ollama's default of one slot and probes one beyond it", () => {
    const l = new SlotLearner();
    expect(l.estimate).toBe(1);
    expect(l.probeCap).toBe(2);
  });

  it.each([1, 2, 3, 4])('learns %i real slot(s) from bursts that exceed them, never more', (slots) => {
    const l = new SlotLearner();
    // Bursts of 6 concurrent requests, 1 s each, 10 s apart: each burst over-fills the slots.
    const arrivals = [0, 10_000, 20_000].flatMap((t0) => [0, 1, 2, 3, 4, 5].map((k) => t0 + k));
    simulateRunner(slots, arrivals, 1000, l);
    expect(l.estimate).toBe(slots);
    expect(l.upper).toBe(slots);
    expect(l.probeCap).toBe(slots);
  });

  it('grows one slot at a time as probes start without queueing', () => {
    const l = new SlotLearner();
    simulateRunner(4, [0, 1], 1000, l);
    expect(l.estimate).toBe(2);
    simulateRunner(4, [5000, 5001, 5002], 1000, l);
    expect(l.estimate).toBe(3);
    expect(l.upper).toBe(Infinity);
  });

  it('does not count a request that ended just before the newcomer started', () => {
    const l = new SlotLearner();
    const a = l.begin(0);
    const b = l.begin(990);
    l.finish({ sample: a, queueWaitMs: 0, runMs: 1000 }, 1000);
    // b started at 1000 (after a ended): it queued 10 ms, within the noise, and ran alone.
    l.finish({ sample: b, queueWaitMs: 10, runMs: 1000 }, 2000);
    expect(l.estimate).toBe(1);
  });

  it('drops a ceiling that later traffic disproves, and a floor a later queue refutes', () => {
    const l = new SlotLearner();
    simulateRunner(1, [0, 1], 1000, l);
    expect(l.upper).toBe(1);
    simulateRunner(3, [10_000, 10_001, 10_002], 1000, l);
    expect(l.estimate).toBe(3);
    expect(l.upper).toBe(Infinity);
    simulateRunner(1, [20_000, 20_001], 1000, l);
    expect(l.estimate).toBe(1);
  });
});

describe('RoomLearner', () => {
  it('counts an unproven extra model as no room, and learns the ceiling from an eviction', () => {
    const r = new RoomLearner();
    expect(r.estimate).toBe(1);
    r.observe(2);
    expect(r.estimate).toBe(2);
    expect(r.known).toBe(false);
    r.observeLoad(['a', 'b'], ['b', 'c'], 'c');
    expect(r.estimate).toBe(2);
    expect(r.known).toBe(true);
    // Holding three at once later means the ceiling was wrong.
    r.observe(3);
    expect(r.known).toBe(false);
    expect(r.estimate).toBe(3);
  });

  it('a load beside resident models proves room without a ceiling', () => {
    const r = new RoomLearner();
    r.observeLoad(['a'], ['a', 'b'], 'b');
    expect(r.estimate).toBe(2);
    expect(r.known).toBe(false);
  });
});

describe('PrefillLearner', () => {
  it('learns from fresh prompts and ignores prompt-cache hits', () => {
    const p = new PrefillLearner();
    p.observe(1000, 500e6, false); // 0.5 ms per token
    expect(p.msPerToken).toBeCloseTo(0.5);
    p.observe(1000, 20e6, true); // a conversation whose prompt was mostly cached
    expect(p.msPerToken).toBeCloseTo(0.5);
    p.observe(1000, 10e6, false); // a shared cached system prompt
    expect(p.msPerToken).toBeCloseTo(0.5);
    p.observe(1000, 600e6, true); // a conversation that missed the cache teaches
    expect(p.msPerToken).toBeGreaterThan(0.5);
    p.observe(4, 1e9, false); // too short to say
    expect(p.msPerToken).toBeLessThan(0.6);
  });
});

describe('OutputLengthLearner', () => {
  it('treats num_predict as an upper bound scaled by how much of it the model uses', () => {
    const o = new OutputLengthLearner();
    expect(o.expected(100)).toBe(100);
    expect(o.expected(null)).toBeNull();
    for (let i = 0; i < 50; i++) o.observe(40, 200);
    expect(o.expected(200)).toBeLessThan(60);
    expect(o.expected(200)).toBeGreaterThanOrEqual(40);
    expect(o.expected(null)).toBe(40);
    expect(o.usual).toBeCloseTo(40, 0);
  });
});
