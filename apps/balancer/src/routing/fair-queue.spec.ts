import * as fc from 'fast-check';
import { FairQueue, OfferInput, Waiter } from './fair-queue';

const CLASSES = ['interactive', 'standard', 'batch', 'sheddable'];
const [INTERACTIVE, STANDARD, BATCH, SHEDDABLE] = [0, 1, 2, 3];

function queue(over: Partial<ConstructorParameters<typeof FairQueue>[0]> = {}): FairQueue<string> {
  return new FairQueue<string>({
    classes: CLASSES,
    minShareEvery: 10,
    capacity: 1000,
    sheddable: ['sheddable'],
    shedAt: 0,
    ...over,
  });
}

function add(q: FairQueue<string>, value: string, o: Partial<OfferInput> = {}): Waiter<string> {
  const r = q.offer(value, { model: 'm', key: '', cls: STANDARD, weight: 1, now: 0, ...o });
  if (r.kind !== 'queued') throw new Error(`not queued: ${r.kind}`);
  return r.waiter;
}

/** Grants `n` slots for the model, one at a time, and names who got them. */
function grant(q: FairQueue<string>, n: number, model: string | null = 'm'): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = q.peek(model);
    if (w === null) break;
    q.take(w);
    out.push(w.value);
  }
  return out;
}

describe('FairQueue', () => {
  it("is a plain FIFO per model with one class and one key (today's behaviour)", () => {
    const q = queue();
    for (let i = 0; i < 5; i++) add(q, `a${i}`);
    add(q, 'other', { model: 'o' });
    for (let i = 5; i < 8; i++) add(q, `a${i}`);
    expect(grant(q, 100)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7']);
    expect(q.size).toBe(1);
    expect(grant(q, 1, 'o')).toEqual(['other']);
    expect(q.size).toBe(0);
  });

  it('serves a higher class first, whatever arrived earlier', () => {
    const q = queue();
    add(q, 'b1', { cls: BATCH });
    add(q, 's1', { cls: STANDARD });
    add(q, 'b2', { cls: BATCH });
    add(q, 'i1', { cls: INTERACTIVE });
    expect(grant(q, 4)).toEqual(['i1', 's1', 'b1', 'b2']);
  });

  it("gives capacity freed for a model only to that model's waiters", () => {
    const q = queue();
    add(q, 'x-batch', { model: 'x', cls: BATCH });
    add(q, 'y-interactive', { model: 'y', cls: INTERACTIVE });
    expect(q.peek('x')?.value).toBe('x-batch');
    expect(q.peek('z')).toBeNull();
    expect(grant(q, 5, 'x')).toEqual(['x-batch']);
    expect(q.sizeFor('y')).toBe(1);
  });

  it('shares a class between backlogged keys in proportion to their weights, FIFO within a key', () => {
    const q = queue();
    for (let i = 0; i < 300; i++) {
      add(q, `heavy${i}`, { key: 'heavy', weight: 2 });
      add(q, `light${i}`, { key: 'light', weight: 1 });
    }
    const served = grant(q, 300);
    const heavy = served.filter((s) => s.startsWith('heavy'));
    const light = served.filter((s) => s.startsWith('light'));
    expect(heavy.length).toBe(200);
    expect(light.length).toBe(100);
    expect(heavy).toEqual(Array.from({ length: 200 }, (_, i) => `heavy${i}`));
    expect(light).toEqual(Array.from({ length: 100 }, (_, i) => `light${i}`));
  });

  it('lets a key that was away re-enter at the current virtual time, with no credit saved up', () => {
    const q = queue();
    for (let i = 0; i < 100; i++) add(q, `busy${i}`, { key: 'busy' });
    grant(q, 50);
    // 'late' was idle while 'busy' had 50 grants: it now shares 1:1, it does not get 50 in a row.
    for (let i = 0; i < 10; i++) add(q, `late${i}`, { key: 'late' });
    const next = grant(q, 10);
    expect(next.filter((s) => s.startsWith('late')).length).toBe(5);
  });

  it('gives a waiting lower class one grant in every minShareEvery, never starving it', () => {
    const q = queue({ minShareEvery: 4 });
    for (let i = 0; i < 3; i++) add(q, `b${i}`, { cls: BATCH });
    for (let i = 0; i < 20; i++) add(q, `i${i}`, { cls: INTERACTIVE });
    const served = grant(q, 12);
    expect(served).toEqual(['i0', 'i1', 'i2', 'b0', 'i3', 'i4', 'i5', 'b1', 'i6', 'i7', 'i8', 'b2']);
  });

  it("bounds every waiting class's wait by minShareEvery + classes - 2 grants", () => {
    const N = 5;
    const q = queue({ minShareEvery: N });
    for (let i = 0; i < 200; i++) for (const c of [INTERACTIVE, STANDARD, BATCH]) add(q, `${c}:${i}`, { cls: c });
    const served = grant(q, 300);
    for (const c of [STANDARD, BATCH]) {
      let gap = 0;
      let worst = 0;
      for (const s of served) {
        gap = s.startsWith(`${c}:`) ? 0 : gap + 1;
        worst = Math.max(worst, gap);
      }
      expect(worst).toBeLessThanOrEqual(N + 3 - 2);
    }
    // Strict priority still dominates: the top class gets most grants.
    expect(served.filter((s) => s.startsWith('0:')).length).toBeGreaterThan(served.length / 2);
  });

  it('when full, displaces the newest waiter of the lowest class below the arrival', () => {
    const q = queue({ capacity: 4 });
    add(q, 'b-old', { cls: BATCH });
    add(q, 's1', { cls: STANDARD });
    add(q, 'b-new', { cls: BATCH });
    add(q, 's2', { cls: STANDARD });
    const r = q.offer('i1', { model: 'm', key: '', cls: INTERACTIVE, weight: 1, now: 0 });
    expect(r.kind).toBe('queued');
    expect(r.kind === 'queued' && r.displaced?.value).toBe('b-new');
    expect(q.size).toBe(4);
    // The same class cannot displace its own kind, nor can a lower one.
    expect(q.offer('b-late', { model: 'm', key: '', cls: BATCH, weight: 1, now: 0 }).kind).toBe('full');
    const s3 = q.offer('s3', { model: 'm', key: '', cls: STANDARD, weight: 1, now: 0 });
    expect(s3.kind === 'queued' && s3.displaced?.value).toBe('b-old');
    expect(q.offer('s4', { model: 'm', key: '', cls: STANDARD, weight: 1, now: 0 }).kind).toBe('full');
    expect(grant(q, 10)).toEqual(['i1', 's1', 's2', 's3']);
  });

  it('refuses a sheddable request under overload instead of queueing it', () => {
    const q = queue({ shedAt: 2 });
    add(q, 'sh0', { cls: SHEDDABLE });
    add(q, 's0');
    expect(q.offer('sh1', { model: 'm', key: '', cls: SHEDDABLE, weight: 1, now: 0 }).kind).toBe('shed');
    expect(q.offer('s1', { model: 'm', key: '', cls: STANDARD, weight: 1, now: 0 }).kind).toBe('queued');
    const never = queue({ shedAt: 0 });
    expect(never.offer('sh', { model: 'm', key: '', cls: SHEDDABLE, weight: 1, now: 0 }).kind).toBe('shed');
  });

  it('states the position a waiter entered at: its class and higher ones, same model', () => {
    const q = queue();
    add(q, 'b', { cls: BATCH });
    add(q, 'x', { model: 'x', cls: INTERACTIVE });
    expect(add(q, 's', { cls: STANDARD }).position).toBe(1);
    expect(add(q, 'i', { cls: INTERACTIVE }).position).toBe(1);
    expect(add(q, 's2', { cls: STANDARD }).position).toBe(3);
    expect(add(q, 'b2', { cls: BATCH }).position).toBe(5);
  });

  it('forgets a cancelled waiter wherever it stood, and counts by class and key', () => {
    const q = queue();
    const a = add(q, 'a', { key: 'k1' });
    const b = add(q, 'b', { key: 'k1' });
    add(q, 'c', { key: 'k2', cls: BATCH });
    expect(q.waitingByClassAndKey()).toEqual([
      { cls: 'standard', key: 'k1', waiting: 2 },
      { cls: 'batch', key: 'k2', waiting: 1 },
    ]);
    expect(q.cancel(b)).toBe(true);
    expect(q.cancel(b)).toBe(false);
    expect(q.cancel(a)).toBe(true);
    expect(grant(q, 5)).toEqual(['c']);
    expect(q.size).toBe(0);
    expect(q.waitingByClassAndKey()).toEqual([]);
  });

  it('passes over waiters that cannot use the capacity on offer, in the same order otherwise', () => {
    const q = queue();
    const a1 = add(q, 'a1', { key: 'k1' });
    const b1 = add(q, 'b1', { key: 'k2' });
    const a2 = add(q, 'a2', { key: 'k1' });
    add(q, 'batch', { cls: BATCH });
    expect(q.peek('m')?.value).toBe('a1');
    expect(q.peek('m', new Set([a1]))?.value).toBe('b1');
    expect(q.peek('m', new Set([a1, b1]))?.value).toBe('a2');
    // Every standard waiter passed over: the lower class is next.
    expect(q.peek('m', new Set([a1, b1, a2]))?.value).toBe('batch');
    q.take(b1);
    expect(grant(q, 3)).toEqual(['a1', 'a2', 'batch']);
  });

  it('drains everything on shutdown', () => {
    const q = queue();
    add(q, 'a');
    add(q, 'b', { model: 'o', cls: BATCH });
    expect(
      q
        .drainAll()
        .map((w) => w.value)
        .sort(),
    ).toEqual(['a', 'b']);
    expect(q.size).toBe(0);
    expect(q.peek('m')).toBeNull();
  });

  it('agrees with a naive reference on random offers, grants and cancels (deterministic, same answers)', () => {
    type Op =
      | { t: 'offer'; model: number; key: number; cls: number }
      | { t: 'grant'; model: number }
      | { t: 'cancel' | 'takeAny'; pick: number };
    const op = fc.oneof(
      fc.record({ t: fc.constant('offer' as const), model: fc.nat(2), key: fc.nat(3), cls: fc.nat(2) }),
      fc.record({ t: fc.constant('grant' as const), model: fc.nat(2) }),
      fc.record({ t: fc.constant('cancel' as const), pick: fc.nat(1000) }),
      fc.record({ t: fc.constant('takeAny' as const), pick: fc.nat(1000) }),
    );
    const weights = [1, 2, 3, 0.5];
    fc.assert(
      fc.property(fc.array(op, { minLength: 20, maxLength: 300, size: 'max' }), (ops: Op[]) => {
        const run = (): string[] => {
          const q = new FairQueue<number>({ classes: ['a', 'b', 'c'], minShareEvery: 3, capacity: 40 });
          const ref = new NaiveQueue(3, 3, 40);
          const live: Waiter<number>[] = [];
          const log: string[] = [];
          let n = 0;
          for (const o of ops) {
            if (o.t === 'offer') {
              const id = n++;
              const r = q.offer(id, {
                model: `m${o.model}`,
                key: `k${o.key}`,
                cls: o.cls,
                weight: weights[o.key],
                now: 0,
              });
              const e = ref.offer(id, `m${o.model}`, `k${o.key}`, o.cls, weights[o.key]);
              const got = r.kind === 'queued' ? `q${r.displaced?.value ?? ''}/${r.waiter.position}` : r.kind;
              expect(got).toBe(e);
              if (r.kind === 'queued') {
                live.push(r.waiter);
                if (r.displaced) live.splice(live.indexOf(r.displaced), 1);
              }
              log.push(got);
            } else if (o.t === 'grant') {
              const w = q.peek(`m${o.model}`);
              expect(w?.value ?? null).toBe(ref.peek(`m${o.model}`));
              if (w) {
                q.take(w);
                ref.take(w.value);
                live.splice(live.indexOf(w), 1);
              }
              log.push(`g${w?.value ?? '-'}`);
            } else if (o.t === 'takeAny' && live.length > 0) {
              // A grant to a waiter that was not first (the first could not use the backend).
              const w = live.splice(o.pick % live.length, 1)[0];
              q.take(w);
              ref.take(w.value);
              log.push(`t${w.value}`);
            } else if (live.length > 0) {
              const w = live.splice(o.pick % live.length, 1)[0];
              expect(q.cancel(w)).toBe(true);
              ref.cancel(w.value);
            }
            expect(q.size).toBe(ref.items.length);
          }
          return log;
        };
        expect(run()).toEqual(run());
      }),
      { numRuns: 100 },
    );
  });
});

/** The same rules written the slow, obvious way: scans of plain arrays. */
class NaiveQueue {
  items: { id: number; model: string; key: string; cls: number; seq: number }[] = [];
  private seq = 0;
  private flows = new Map<string, { finish: number; tag: number; weight: number }>();
  private vtime = new Map<string, number>();
  private passed = new Map<string, number>();
  constructor(
    private readonly nClasses: number,
    private readonly minShareEvery: number,
    private readonly capacity: number,
  ) {}

  private fk(model: string, cls: number, key: string): string {
    return `${model}|${cls}|${key}`;
  }

  private inFlow(model: string, cls: number, key: string): typeof this.items {
    return this.items.filter((i) => i.model === model && i.cls === cls && i.key === key);
  }

  offer(id: number, model: string, key: string, cls: number, weight: number): string {
    let displaced = '';
    if (this.items.length >= this.capacity) {
      let victim: (typeof this.items)[0] | undefined;
      for (let c = this.nClasses - 1; c > cls && !victim; c--) {
        const inClass = this.items.filter((i) => i.cls === c);
        victim = inClass[inClass.length - 1];
      }
      if (!victim) return 'full';
      this.remove(victim.id);
      displaced = String(victim.id);
    }
    const position = 1 + this.items.filter((i) => i.model === model && i.cls <= cls).length;
    const fk = this.fk(model, cls, key);
    const vk = `${model}|${cls}`;
    let f = this.flows.get(fk);
    if (!f) this.flows.set(fk, (f = { finish: 0, tag: 0, weight }));
    f.weight = weight;
    if (this.inFlow(model, cls, key).length === 0) f.tag = Math.max(this.vtime.get(vk) ?? 0, f.finish);
    this.items.push({ id, model, key, cls, seq: this.seq++ });
    return `q${displaced}/${position}`;
  }

  peek(model: string): number | null {
    const mine = this.items.filter((i) => i.model === model);
    if (mine.length === 0) return null;
    const waiting = [...new Set(mine.map((i) => i.cls))].sort((a, b) => a - b);
    let cls = waiting[0];
    for (const c of waiting.slice(1))
      if ((this.passed.get(`${model}|${c}`) ?? 0) >= this.minShareEvery - 1) {
        cls = c;
        break;
      }
    const heads = new Map<string, (typeof this.items)[0]>();
    for (const i of mine) if (i.cls === cls && !heads.has(i.key)) heads.set(i.key, i);
    let best: (typeof this.items)[0] | null = null;
    for (const h of heads.values()) {
      const t = this.flows.get(this.fk(model, cls, h.key))!.tag;
      const bt = best ? this.flows.get(this.fk(model, cls, best.key))!.tag : Infinity;
      if (!best || t < bt || (t === bt && h.seq < best.seq)) best = h;
    }
    return best!.id;
  }

  take(id: number): void {
    const it = this.items.find((i) => i.id === id)!;
    for (let c = it.cls + 1; c < this.nClasses; c++)
      if (this.items.some((i) => i.model === it.model && i.cls === c))
        this.passed.set(`${it.model}|${c}`, (this.passed.get(`${it.model}|${c}`) ?? 0) + 1);
    this.passed.set(`${it.model}|${it.cls}`, 0);
    const f = this.flows.get(this.fk(it.model, it.cls, it.key))!;
    const vk = `${it.model}|${it.cls}`;
    const head = this.inFlow(it.model, it.cls, it.key)[0] === it;
    this.remove(id);
    if (head) {
      this.vtime.set(vk, Math.max(this.vtime.get(vk) ?? 0, f.tag));
      f.finish = f.tag + 1 / f.weight;
      if (this.inFlow(it.model, it.cls, it.key).length > 0) f.tag = f.finish;
    } else f.tag += 1 / f.weight;
  }

  cancel(id: number): void {
    this.remove(id);
  }

  private remove(id: number): void {
    const it = this.items.find((i) => i.id === id)!;
    this.items.splice(this.items.indexOf(it), 1);
    if (!this.items.some((i) => i.model === it.model && i.cls === it.cls)) this.passed.set(`${it.model}|${it.cls}`, 0);
    if (!this.items.some((i) => i.model === it.model)) {
      // The model's state goes with its last waiter, as in FairQueue.
      for (const k of [...this.flows.keys()]) if (k.startsWith(`${it.model}|`)) this.flows.delete(k);
      for (let c = 0; c < this.nClasses; c++) {
        this.vtime.delete(`${it.model}|${c}`);
        this.passed.delete(`${it.model}|${c}`);
      }
    }
  }
}
