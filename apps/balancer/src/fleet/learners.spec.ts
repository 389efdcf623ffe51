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

describe('PrefillLearner as a shared number (value)', () => {
  it('reads and sets the learned ms per token (what the replicas share over Redis)', () => {
    const p = new PrefillLearner();
    expect(p.value).toBeNull();
    p.value = 0.8;
    expect([p.value, p.msPerToken]).toEqual([0.8, 0.8]);
    p.observe(1000, 20e6, true); // a cache hit against the merged value: ignored
    expect(p.value).toBe(0.8);
  });
});

describe('OutputLengthLearner', () => {
  it('caps the usual length with a bound before any bounded answer was seen', () => {
    const o = new OutputLengthLearner();
    for (let i = 0; i < 5; i++) o.observe(40, null);
    expect(o.expected(1000)).toBe(40);
    expect(o.expected(10)).toBe(10);
    expect(o.expected(null)).toBe(40);
  });

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

describe('SlotLearner.started (a slot proven at each first byte)', () => {
  it('proves one slot per request proven running (its own first byte came, it has not ended), plus itself', () => {
    const l = new SlotLearner();
    const a = l.begin(0);
    const b = l.begin(1);
    const c = l.begin(2);
    l.started(a, 10);
    expect(l.estimate).toBe(1);
    l.started(b, 11);
    expect(l.estimate).toBe(2);
    l.started(c, 12);
    expect(l.estimate).toBe(3);
    expect(l.lower).toBe(3);
  });

  it('does not take the order of sending for the order of starting (separate connections reorder)', () => {
    // a was sent first but queued at Ollama behind b (no first byte yet): b's first byte proves one slot.
    const l = new SlotLearner();
    const a = l.begin(517);
    const b = l.begin(519);
    l.started(b, 600);
    expect(l.estimate).toBe(1);
    // b's counters say it ran from 560 without queueing; a, still without a byte, proves nothing.
    l.finish({ sample: b, queueWaitMs: 0, runMs: 400 }, 960);
    expect(l.estimate).toBe(1);
    // Once a's own first byte comes (after b ended) it is alone: still one.
    l.started(a, 1000);
    expect(l.estimate).toBe(1);
  });

  it('counts an overlap its counters prove: another ran across its start', () => {
    const l = new SlotLearner();
    const a = l.begin(0);
    const b = l.begin(1);
    // a ran 0..2000 (counters), b ran 500..1500 without queueing: two at once.
    l.finish({ sample: a, queueWaitMs: 0, runMs: 2000 }, 2000);
    l.finish({ sample: b, queueWaitMs: 0, runMs: 1000 }, 1500 + 1);
    expect(l.estimate).toBe(2);
  });

  it('does not count requests that already ended, and ignores a first byte of an ended one', () => {
    const l = new SlotLearner();
    const a = l.begin(0);
    const b = l.begin(1);
    l.started(a, 2);
    l.abandon(a, 5);
    l.started(b, 6);
    expect(l.estimate).toBe(1);
    const c = l.begin(10);
    const d = l.begin(11);
    l.abandon(d, 12);
    l.started(d, 13); // ended: no proof from it
    expect(l.estimate).toBe(1);
    l.started(c, 14);
    expect(l.estimate).toBe(2); // b and c both running
  });

  it('lets one request beyond what is proven in flight (probeCap), never past a proven ceiling', () => {
    const l = new SlotLearner();
    expect(l.probeCap).toBe(2);
    const s = [l.begin(0), l.begin(1)];
    l.started(s[0], 5);
    l.started(s[1], 6);
    expect(l.estimate).toBe(2);
    expect(l.probeCap).toBe(3);
    // A third one sent while those two ran queued inside Ollama (its counters say so): two slots at most.
    const q = l.begin(2);
    l.finish({ sample: q, queueWaitMs: 900, runMs: 1000 }, 2000);
    expect(l.upper).toBe(2);
    expect(l.probeCap).toBe(2);
    expect(l.estimate).toBe(2);
  });

  it('takes the ceiling from a queued request: the requests in flight when it was sent', () => {
    const l = new SlotLearner();
    const a = l.begin(0);
    const b = l.begin(1);
    // b waited 500 ms for a slot while a ran: one slot.
    l.finish({ sample: b, queueWaitMs: 500, runMs: 100 }, 700);
    expect(l.upper).toBe(1);
    expect(l.probeCap).toBe(1);
    l.finish({ sample: a, queueWaitMs: 0, runMs: 600 }, 700);
    expect(l.estimate).toBe(1);
  });

  it('drops a ceiling that a later first byte disproves (a restart with more slots)', () => {
    const l = new SlotLearner();
    const a = l.begin(0);
    const b = l.begin(1);
    l.finish({ sample: b, queueWaitMs: 500, runMs: 100 }, 700);
    expect(l.upper).toBe(1);
    l.abandon(a, 800);
    const s = [l.begin(1000), l.begin(1001), l.begin(1002)];
    s.forEach((x, k) => l.started(x, 1100 + k));
    expect(l.estimate).toBe(3);
    expect(l.upper).toBe(Infinity);
    expect(l.probeCap).toBe(4);
  });
});

describe('RoomLearner.observeFull (a load held back beside resident models)', () => {
  it('makes the room known: what is resident is all there is', () => {
    const r = new RoomLearner();
    r.observe(2);
    expect(r.known).toBe(false);
    r.observeFull(2);
    expect(r.known).toBe(true);
    expect(r.estimate).toBe(2);
    // Even a full host that showed nothing resident has room for one.
    const empty = new RoomLearner();
    empty.observeFull(0);
    expect(empty.estimate).toBe(1);
    expect(empty.known).toBe(true);
    // Holding more later refutes it.
    r.observe(3);
    expect(r.known).toBe(false);
    expect(r.estimate).toBe(3);
  });
});
