import { loadBalancerConfig } from '../config/balancer-config';
import { FairPlacementQueue } from './fair-placement-queue';
import type { Lease } from './lease-ledger';
import { NoCandidate, Placement, WAIT, WAIT_BY_CHOICE } from './placement';
import type { QueuedRequest } from './placement-queue';

const LEASE = { kind: 'lease' } as unknown as Lease;

function queue(env: Record<string, string> = {}): FairPlacementQueue {
  return new FairPlacementQueue(
    loadBalancerConfig({ OLLAMA_BACKENDS: 'http://gpu1:11434', QUEUE_TIMEOUT_MS: '60000', ...env }),
  );
}

interface Probe extends QueuedRequest {
  name: string;
  told: string[];
}

function entry(name: string, model: string, cls: number, key = ''): Probe {
  const told: string[] = [];
  return {
    name,
    told,
    route: { model, modelSize: 0, sessionKey: null, now: 0, queue: { cls, key, weight: 1 } },
    tried: new Set(),
    onPlaced: () => told.push('placed'),
    onRefused: (r: NoCandidate) => told.push(`${r.status} ${r.message}`),
  };
}

describe('FairPlacementQueue', () => {
  let q: FairPlacementQueue;
  afterEach(() => q.refuseAll(new NoCandidate(503, 'test over')));

  it('refuses a sheddable request (429) and a full queue (503), each with Retry-After, and tells a displaced waiter', () => {
    q = queue({ QUEUE_MAX: '1' });
    const shed = q.offer(entry('s', 'm', 3), 0);
    expect(shed).toMatchObject({ status: 429, retryAfterS: 15 });
    const batch = entry('b', 'm', 2);
    expect(q.offer(batch, 0)).toBeNull();
    expect(q.offer(entry('b2', 'm', 2), 0)).toMatchObject({
      status: 503,
      message: 'server busy, please try again.  balancer queue is full',
    });
    const chat = entry('i', 'm', 0, 'chat');
    expect(q.offer(chat, 0)).toBeNull();
    expect(batch.told).toEqual([
      "503 server busy, please try again.  displaced from the full balancer queue by a request of a higher class than 'batch'",
    ]);
    expect(chat.queuePosition).toBe(1);
    expect(q.counters).toEqual({ queued: 2, timeouts: 0, rejected: 1, displaced: 1, shed: 1 });
    expect(q.waitingByClassAndKey()).toEqual([{ cls: 'interactive', key: 'chat', waiting: 1 }]);
  });

  it('offers capacity to the highest class across models, skips a model that must wait, tells after the pass', () => {
    q = queue();
    const a = entry('a-batch', 'a', 2);
    const b = entry('b-interactive', 'b', 0);
    const c = entry('c-standard', 'c', 1);
    for (const e of [a, b, c]) expect(q.offer(e, 0)).toBeNull();
    const offered: string[] = [];
    q.drain((e): Placement => {
      const p = e as Probe;
      offered.push(p.name);
      // Nothing told during the pass.
      expect([a, b, c].every((x) => x.told.length === 0)).toBe(true);
      return p === c ? WAIT : LEASE;
    });
    expect(offered).toEqual(['b-interactive', 'c-standard', 'a-batch']);
    expect([a.told, b.told, c.told]).toEqual([['placed'], ['placed'], []]);
    expect(q.length).toBe(1);
    expect(q.hasWaiting('c')).toBe(true);
    expect(q.hasWaiting('a')).toBe(false);
    expect([q.waitingFor('c'), q.waitingFor('a')]).toEqual([1, 0]);
    expect(q.offer(entry('c-again', 'c', 1), 0)).toBeNull();
    expect(q.waitingFor('c')).toBe(2);
  });

  it('passes over a retry that cannot use the free backend, so the waiter behind it can', () => {
    q = queue();
    const retry = entry('retry', 'm', 1);
    (retry.tried as Set<unknown>).add('b1');
    const next = entry('next', 'm', 1);
    const fresh = entry('fresh', 'm', 1);
    for (const e of [retry, next, fresh]) expect(q.offer(e, 0)).toBeNull();
    const offered: string[] = [];
    // One backend is free; the retry may not use it, the next one may; then it is full again.
    let free = 1;
    q.drain((e): Placement => {
      const p = e as Probe;
      offered.push(p.name);
      if (p.tried.size > 0 || free === 0) return WAIT;
      free--;
      return LEASE;
    });
    expect(offered).toEqual(['retry', 'next', 'fresh']);
    expect([retry.told, next.told, fresh.told]).toEqual([[], ['placed'], []]);
    // A waiter that may go anywhere and still waits stops the model: nothing behind it is tried.
    const tried: string[] = [];
    q.drain((e): Placement => {
      tried.push((e as Probe).name);
      return WAIT;
    });
    expect(tried).toEqual(['retry', 'fresh']);
  });

  it('looks past a waiter that chose to wait for a busy backend: the next is placed with one ahead of it (and told how many wait behind)', () => {
    q = queue();
    const first = entry('first', 'm', 1);
    const second = entry('second', 'm', 1);
    const third = entry('third', 'm', 1);
    const other = entry('other', 'n', 1);
    for (const e of [first, second, third, other]) expect(q.offer(e, 0)).toBeNull();
    const offered: [string, number, number | undefined][] = [];
    let free = 1;
    q.drain((e, ahead, _queuedMs, _now, behind): Placement => {
      const p = e as Probe;
      offered.push([p.name, ahead, behind]);
      if (p.name === 'first') return WAIT_BY_CHOICE; // a free backend exists, it prefers the busy warm one
      if (p.name === 'other') return LEASE;
      if (free === 0) return WAIT;
      free--;
      return LEASE;
    });
    // 'second' was judged with 'first' ahead of it and took the free backend; 'third' found none.
    expect(offered).toEqual([
      ['first', 0, 2],
      ['second', 1, 1],
      ['third', 1, 0],
      ['other', 0, 0],
    ]);
    expect([first.told, second.told, third.told, other.told]).toEqual([[], ['placed'], [], ['placed']]);
    expect(q.length).toBe(2);
    // The waiter that chose to wait keeps its place at the head.
    const heads: string[] = [];
    q.drain((e): Placement => {
      heads.push((e as Probe).name);
      return LEASE;
    });
    expect(heads).toEqual(['first', 'third']);
  });

  it('a plain WAIT (nothing it may use is free) stops the model; WAIT_BY_CHOICE looks at most 32 waiters past', () => {
    q = queue();
    const waiters = Array.from({ length: 40 }, (_, i) => entry(`w${i}`, 'm', 1));
    for (const e of waiters) expect(q.offer(e, 0)).toBeNull();
    const plain: string[] = [];
    q.drain((e): Placement => {
      plain.push((e as Probe).name);
      return WAIT;
    });
    expect(plain).toEqual(['w0']);
    const byChoice: number[] = [];
    q.drain((_e, ahead): Placement => {
      byChoice.push(ahead);
      return WAIT_BY_CHOICE;
    });
    expect(byChoice).toEqual(Array.from({ length: 33 }, (_, i) => i));
    expect(waiters.every((w) => w.told.length === 0)).toBe(true);
  });

  it('answers 503 + Retry-After when a request waited QUEUE_TIMEOUT_MS, and forgets a cancelled one', async () => {
    q = queue({ QUEUE_TIMEOUT_MS: '20' });
    const late = entry('late', 'm', 1);
    const gone = entry('gone', 'm', 1);
    q.offer(late, 0);
    q.offer(gone, 0);
    q.cancel(gone);
    await new Promise((r) => setTimeout(r, 60));
    expect(late.told).toEqual(['503 server busy, please try again.  timed out after 20 ms in the balancer queue']);
    expect(gone.told).toEqual([]);
    expect(q.length).toBe(0);
    expect(q.counters.timeouts).toBe(1);
  });
});
