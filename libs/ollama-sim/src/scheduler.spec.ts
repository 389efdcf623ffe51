import { resolveConfig, type SimConfig } from './config';
import { Scheduler, toDiskModel, type Lease, type Waiter } from './scheduler';

function setup(cfg: SimConfig) {
  const sched = new Scheduler(resolveConfig({ loadMsPerGB: 0, ...cfg }));
  const granted: string[] = [];
  const leases = new Map<string, Lease>();
  const ask = (id: string, model: string, keepAliveMs?: number): Waiter => {
    const w: Waiter = {
      model: toDiskModel({ name: model, sizeBytes: 1e9 }),
      keepAliveMs,
      arrivedAt: Date.now(),
      onGrant: (l) => {
        granted.push(id);
        leases.set(id, l);
      },
    };
    expect(sched.request(w)).toBe(true);
    return w;
  };
  const done = (id: string) => sched.release(leases.get(id)!.runner);
  return { sched, granted, ask, done };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('Scheduler', () => {
  afterEach(() => jest.useRealTimers());

  it('grants slots FIFO per model', async () => {
    const { granted, ask, done, sched } = setup({ numParallel: 2 });
    ask('a', 'm');
    ask('b', 'm');
    ask('c', 'm');
    ask('d', 'm');
    await tick();
    expect(granted).toEqual(['a', 'b']);
    expect(sched.queued).toBe(2);
    done('b');
    expect(granted).toEqual(['a', 'b', 'c']);
    done('a');
    expect(granted).toEqual(['a', 'b', 'c', 'd']);
    sched.shutdown();
  });

  it('a cancelled waiter leaves the queue and never gets a slot', async () => {
    const { granted, ask, done, sched } = setup({ numParallel: 1 });
    ask('a', 'm');
    const b = ask('b', 'm');
    ask('c', 'm');
    await tick();
    sched.cancel(b);
    done('a');
    expect(granted).toEqual(['a', 'c']);
    sched.shutdown();
  });

  it('evicts the LRU idle model, never a busy one, and makes later loads wait', async () => {
    const { granted, ask, done, sched } = setup({ maxLoadedModels: 2 });
    ask('a', 'x');
    ask('b', 'y');
    await tick();
    done('a'); // x idle, y busy
    ask('c', 'z'); // evicts x
    await tick();
    expect([...sched.runners.keys()].sort()).toEqual(['y:latest', 'z:latest']);
    expect(sched.counters.evictions).toBe(1);
    ask('d', 'w'); // y and z busy: waits
    await tick();
    expect(granted).not.toContain('d');
    done('c');
    await tick();
    expect(granted).toContain('d');
    expect([...sched.runners.keys()].sort()).toEqual(['w:latest', 'y:latest']);
    sched.shutdown();
  });

  it('refuses past maxQueue', async () => {
    const { ask, sched } = setup({ numParallel: 1, maxQueue: 1 });
    ask('a', 'm');
    await tick();
    ask('b', 'm');
    const w: Waiter = {
      model: toDiskModel({ name: 'm', sizeBytes: 1 }),
      keepAliveMs: undefined,
      arrivedAt: Date.now(),
      onGrant: () => undefined,
    };
    expect(sched.request(w)).toBe(false);
    sched.shutdown();
  });
});
