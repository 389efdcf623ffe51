/**
 * Who gets the next free slot for a model: a pure, deterministic scheduler (no clock, no timers,
 * no I/O; `seq` order breaks every tie), so the same calls in the same order always give the same
 * answers, and its state can later live elsewhere (a shared store) behind the same methods.
 *
 * - Priority classes, highest first (names and order from configuration). Strict priority between
 *   classes, with a stated minimum share: a class that has waiters for a model and has seen
 *   `minShareEvery - 1` grants for that model go to higher classes gets the next one (the highest
 *   such class when several are due). So a waiting class gets at least one grant in every
 *   `minShareEvery + classes - 2` grants for its model, about 1/minShareEvery of them, never none.
 * - Within a class, start-time fair queuing between keys (Goyal, Vin, Cheng 1996): a key's head
 *   waiter carries a start tag max(V, the key's last finish tag); the smallest tag is served next
 *   and the key's finish tag becomes tag + cost / weight; V (per model and class) is the tag last
 *   served. Backlogged keys thus share grants in proportion to their weights; a key that was idle
 *   re-enters at V (no credit hoarded while away). FIFO within a key.
 * - Per-model eligibility: waiters are kept per model; `peek(model)` is the waiter that should take
 *   capacity freed for that model. Capacity for a model never goes to a waiter for another one, and
 *   a waiter that cannot use what is on offer can be skipped (`peek(model, skip)`) without holding
 *   up the ones behind it.
 * - A bounded queue: when it is full an arriving request displaces the newest waiter of the lowest
 *   class below its own (that waiter is told, never dropped silently); with none below it is refused.
 *   Classes marked sheddable are refused at once (no waiting) while the queue holds `shedAt` or more.
 *
 * Costs: offer, cancel and take are O(log k) for k keys waiting in that model and class, plus
 * O(classes); peek is O(classes) (with waiters to skip: O(keys in the class + skipped)). Nothing
 * walks the waiters.
 */

export interface FairQueueOptions {
  /** Class names, highest priority first. */
  classes: readonly string[];
  /** A waiting class gets at least one grant in about this many (>= 2). */
  minShareEvery: number;
  /** Most waiters held at once (0: nothing may wait). */
  capacity: number;
  /** Classes refused rather than queued under overload. */
  sheddable?: readonly string[];
  /** Queue length from which a sheddable request is refused instead of queued (0: it never waits). */
  shedAt?: number;
}

export interface OfferInput {
  model: string | null;
  /** The key's name ('' without keys): the unit of fair share. */
  key: string;
  /** Class index into `classes` (0 = highest). */
  cls: number;
  /** The key's weight within its class (> 0). */
  weight: number;
  /** What one grant costs the key in virtual time (default 1: fair in requests). */
  cost?: number;
  /** When it arrived (ms); kept for the caller, never read by the scheduler. */
  now: number;
}

/** One waiting request. Treat as read-only outside the queue. */
export interface Waiter<T> {
  readonly value: T;
  readonly model: string | null;
  readonly key: string;
  readonly cls: number;
  readonly cost: number;
  readonly enqueuedAt: number;
  /** Arrival order, unique and increasing. */
  readonly seq: number;
  /**
   * Position it entered at: 1 + the waiters then for the same model in its class or a higher one.
   * Later arrivals of a higher class (and weights within its class) may still go ahead of it.
   */
  readonly position: number;
  /** @internal */ flow: Flow<T> | null;
  /** @internal */ prevInFlow: Waiter<T> | null;
  /** @internal */ nextInFlow: Waiter<T> | null;
  /** @internal */ prevInClass: Waiter<T> | null;
  /** @internal */ nextInClass: Waiter<T> | null;
}

export type OfferResult<T> =
  | { kind: 'queued'; waiter: Waiter<T>; displaced: Waiter<T> | null }
  /** A sheddable class under overload: refuse now (429). */
  | { kind: 'shed' }
  /** The queue is full and nothing of a lower class can make room (503). */
  | { kind: 'full' };

/** One key's waiters for one model and class, FIFO. */
interface Flow<T> {
  key: string;
  weight: number;
  head: Waiter<T> | null;
  tail: Waiter<T> | null;
  /** Start tag of the head while the flow has waiters. */
  tag: number;
  /** Finish tag of the last grant. */
  finish: number;
  /** Index in the class heap, -1 when not in it. */
  heapIndex: number;
}

interface ClassGroup<T> {
  /** Flows with waiters, ordered by (tag, head.seq). */
  heap: Flow<T>[];
  flows: Map<string, Flow<T>>;
  /** Virtual time: the start tag of the last grant. */
  vtime: number;
  count: number;
  /** Grants for this model that went to a higher class while this one waited. */
  passed: number;
}

interface ModelGroup<T> {
  classes: ClassGroup<T>[];
  count: number;
}

/** Arrival-ordered list of one class's waiters across models (for displacement). */
interface ClassList<T> {
  head: Waiter<T> | null;
  tail: Waiter<T> | null;
  count: number;
}

export class FairQueue<T> {
  readonly classes: readonly string[];
  private readonly minShareEvery: number;
  private readonly capacity: number;
  private readonly sheddable: boolean[];
  private readonly shedAt: number;
  private readonly models = new Map<string | null, ModelGroup<T>>();
  private readonly byClass: ClassList<T>[];
  /** Waiters by class index and key, for views. */
  private readonly perKey: Map<string, number>[];
  private seq = 0;
  private total = 0;

  constructor(opts: FairQueueOptions) {
    if (opts.classes.length === 0) throw new Error('FairQueue needs at least one class');
    if (!(opts.minShareEvery >= 2)) throw new Error('FairQueue minShareEvery must be >= 2');
    this.classes = [...opts.classes];
    this.minShareEvery = Math.floor(opts.minShareEvery);
    this.capacity = opts.capacity;
    const shed = new Set(opts.sheddable ?? []);
    this.sheddable = this.classes.map((c) => shed.has(c));
    this.shedAt = opts.shedAt ?? 0;
    this.byClass = this.classes.map(() => ({ head: null, tail: null, count: 0 }));
    this.perKey = this.classes.map(() => new Map());
  }

  get size(): number {
    return this.total;
  }

  /** Waiters for one model. */
  sizeFor(model: string | null): number {
    return this.models.get(model)?.count ?? 0;
  }

  /** Waiters in one class (index). */
  sizeOfClass(cls: number): number {
    return this.byClass[cls]?.count ?? 0;
  }

  /** Models that have waiters, in the order they first had them. */
  waitingModels(): IterableIterator<string | null> {
    return this.models.keys();
  }

  /** Waiters by class and key: [{ cls, key, waiting }] with waiting > 0, classes highest first. */
  waitingByClassAndKey(): { cls: string; key: string; waiting: number }[] {
    const out: { cls: string; key: string; waiting: number }[] = [];
    this.perKey.forEach((m, i) => {
      for (const [key, waiting] of m) out.push({ cls: this.classes[i], key, waiting });
    });
    return out;
  }

  /** Queues a request, or says why it may not wait. */
  offer(value: T, input: OfferInput): OfferResult<T> {
    const cls = input.cls;
    if (!Number.isInteger(cls) || cls < 0 || cls >= this.classes.length) throw new Error(`FairQueue: no class ${cls}`);
    if (this.sheddable[cls] && this.total >= this.shedAt) return { kind: 'shed' };
    let displaced: Waiter<T> | null = null;
    if (this.total >= this.capacity) {
      for (let c = this.classes.length - 1; c > cls; c--) {
        const victim = this.byClass[c].tail;
        if (victim !== null) {
          displaced = victim;
          break;
        }
      }
      if (displaced === null) return { kind: 'full' };
      this.unlink(displaced);
    }
    let group = this.models.get(input.model);
    if (group === undefined) {
      group = {
        classes: this.classes.map(() => ({ heap: [], flows: new Map(), vtime: 0, count: 0, passed: 0 })),
        count: 0,
      };
      this.models.set(input.model, group);
    }
    let position = 1;
    for (let c = 0; c <= cls; c++) position += group.classes[c].count;
    const cost = input.cost !== undefined && input.cost > 0 ? input.cost : 1;
    const w: Waiter<T> = {
      value,
      model: input.model,
      key: input.key,
      cls,
      cost,
      enqueuedAt: input.now,
      seq: this.seq++,
      position,
      flow: null,
      prevInFlow: null,
      nextInFlow: null,
      prevInClass: null,
      nextInClass: null,
    };
    const cg = group.classes[cls];
    let flow = cg.flows.get(input.key);
    if (flow === undefined) {
      flow = { key: input.key, weight: input.weight, head: null, tail: null, tag: 0, finish: 0, heapIndex: -1 };
      cg.flows.set(input.key, flow);
    }
    flow.weight = input.weight > 0 ? input.weight : 1;
    w.flow = flow;
    if (flow.tail === null) {
      flow.head = flow.tail = w;
      flow.tag = Math.max(cg.vtime, flow.finish);
      heapPush(cg.heap, flow);
    } else {
      w.prevInFlow = flow.tail;
      flow.tail.nextInFlow = w;
      flow.tail = w;
    }
    cg.count++;
    group.count++;
    const list = this.byClass[cls];
    if (list.tail === null) list.head = list.tail = w;
    else {
      w.prevInClass = list.tail;
      list.tail.nextInClass = w;
      list.tail = w;
    }
    list.count++;
    const pk = this.perKey[cls];
    pk.set(input.key, (pk.get(input.key) ?? 0) + 1);
    this.total++;
    return { kind: 'queued', waiter: w, displaced };
  }

  /** The waiter that should take the next capacity freed for this model (not removed). */
  peek(model: string | null, skip?: ReadonlySet<Waiter<T>>): Waiter<T> | null {
    const group = this.models.get(model);
    if (group === undefined) return null;
    const cls = this.classToServe(group);
    if (cls === -1) return null;
    if (skip === undefined || skip.size === 0) return group.classes[cls].heap[0].head;
    // Some waiters cannot use the capacity on offer (a retry that must avoid the backend it
    // failed on): the next one in the same order, as if they were not there. Rare, and bounded
    // by the keys in a class plus the waiters skipped.
    const w = this.firstNotSkipped(group.classes[cls], skip);
    if (w !== null) return w;
    for (let c = 0; c < group.classes.length; c++) {
      if (c === cls || group.classes[c].count === 0) continue;
      const other = this.firstNotSkipped(group.classes[c], skip);
      if (other !== null) return other;
    }
    return null;
  }

  private firstNotSkipped(cg: ClassGroup<T>, skip: ReadonlySet<Waiter<T>>): Waiter<T> | null {
    let best: Waiter<T> | null = null;
    let bestTag = Infinity;
    for (const flow of cg.heap) {
      let w = flow.head;
      while (w !== null && skip.has(w)) w = w.nextInFlow;
      if (w !== null && (flow.tag < bestTag || (flow.tag === bestTag && w.seq < best!.seq))) {
        best = w;
        bestTag = flow.tag;
      }
    }
    return best;
  }

  /**
   * Hands a waiter its grant (normally `peek`'s, but any queued one may be taken, e.g. when the
   * first cannot use the backend that freed up): it leaves the queue and its key is charged.
   */
  take(w: Waiter<T>): void {
    const flow = w.flow;
    if (flow === null) return;
    const group = this.models.get(w.model)!;
    const cg = group.classes[w.cls];
    // Minimum share: the classes below that keep waiting saw one more grant pass them by.
    for (let c = w.cls + 1; c < group.classes.length; c++) if (group.classes[c].count > 0) group.classes[c].passed++;
    cg.passed = 0;
    const tag = flow.tag;
    const wasHead = flow.head === w;
    this.unlink(w);
    // Charge the key: as SFQ does for its head; a waiter taken from behind its key's head pushes
    // the head's tag back by the same cost (the key pays for it before its head is served).
    if (wasHead) {
      cg.vtime = Math.max(cg.vtime, tag);
      flow.finish = tag + w.cost / flow.weight;
      if (flow.head !== null) this.retag(cg, flow, flow.finish);
    } else {
      this.retag(cg, flow, tag + w.cost / flow.weight);
    }
  }

  /** Removes a waiter that gave up (timeout, client gone): no charge. False when not queued. */
  cancel(w: Waiter<T>): boolean {
    if (w.flow === null) return false;
    this.unlink(w);
    return true;
  }

  /** Removes and returns every waiter (shutdown). */
  drainAll(): Waiter<T>[] {
    const out: Waiter<T>[] = [];
    for (const list of this.byClass) for (let w = list.head; w !== null; w = w.nextInClass) out.push(w);
    for (const w of out) this.unlink(w);
    return out;
  }

  /** Highest class with waiters, unless a lower waiting class is due its minimum share. */
  private classToServe(group: ModelGroup<T>): number {
    let top = -1;
    for (let c = 0; c < group.classes.length; c++) {
      const cg = group.classes[c];
      if (cg.count === 0) continue;
      if (top === -1) top = c;
      else if (cg.passed >= this.minShareEvery - 1) return c;
    }
    return top;
  }

  private retag(cg: ClassGroup<T>, flow: Flow<T>, tag: number): void {
    flow.tag = tag;
    heapFix(cg.heap, flow.heapIndex);
  }

  private unlink(w: Waiter<T>): void {
    const flow = w.flow!;
    const group = this.models.get(w.model)!;
    const cg = group.classes[w.cls];
    const wasHead = flow.head === w;
    if (w.prevInFlow) w.prevInFlow.nextInFlow = w.nextInFlow;
    else flow.head = w.nextInFlow;
    if (w.nextInFlow) w.nextInFlow.prevInFlow = w.prevInFlow;
    else flow.tail = w.prevInFlow;
    if (flow.head === null) heapRemove(cg.heap, flow.heapIndex);
    else if (wasHead) heapFix(cg.heap, flow.heapIndex); // same tag, a later head seq
    const list = this.byClass[w.cls];
    if (w.prevInClass) w.prevInClass.nextInClass = w.nextInClass;
    else list.head = w.nextInClass;
    if (w.nextInClass) w.nextInClass.prevInClass = w.prevInClass;
    else list.tail = w.prevInClass;
    list.count--;
    const pk = this.perKey[w.cls];
    const n = (pk.get(w.key) ?? 1) - 1;
    if (n === 0) pk.delete(w.key);
    else pk.set(w.key, n);
    w.flow = w.prevInFlow = w.nextInFlow = w.prevInClass = w.nextInClass = null;
    cg.count--;
    if (cg.count === 0) cg.passed = 0;
    group.count--;
    this.total--;
    // An empty model group goes (model names come from clients; keep the map bounded by waiters).
    if (group.count === 0) this.models.delete(w.model);
  }
}

// An indexed binary min-heap of flows by (tag, head seq); each flow knows its index.

function before<T>(a: Flow<T>, b: Flow<T>): boolean {
  return a.tag < b.tag || (a.tag === b.tag && a.head!.seq < b.head!.seq);
}

function heapPush<T>(h: Flow<T>[], f: Flow<T>): void {
  f.heapIndex = h.length;
  h.push(f);
  siftUp(h, f.heapIndex);
}

function heapRemove<T>(h: Flow<T>[], i: number): void {
  const f = h[i];
  const last = h.pop()!;
  f.heapIndex = -1;
  if (last === f) return;
  h[i] = last;
  last.heapIndex = i;
  heapFix(h, i);
}

function heapFix<T>(h: Flow<T>[], i: number): void {
  if (i > 0 && before(h[i], h[(i - 1) >> 1])) siftUp(h, i);
  else siftDown(h, i);
}

function siftUp<T>(h: Flow<T>[], i: number): void {
  const f = h[i];
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!before(f, h[p])) break;
    h[i] = h[p];
    h[i].heapIndex = i;
    i = p;
  }
  h[i] = f;
  f.heapIndex = i;
}

function siftDown<T>(h: Flow<T>[], i: number): void {
  const f = h[i];
  const n = h.length;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && before(h[r], h[l]) ? r : l;
    if (!before(h[c], f)) break;
    h[i] = h[c];
    h[i].heapIndex = i;
    i = c;
  }
  h[i] = f;
  f.heapIndex = i;
}
