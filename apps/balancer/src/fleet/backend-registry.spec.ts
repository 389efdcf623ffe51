import { BalancerConfig, loadBalancerConfig } from '../config/balancer-config';
import { BackendRegistry } from './backend-registry.service';
import { InMemoryRegisteredBackends } from './registered-backends';

const cfg = (name: string, url = `http://${name}:11434`) => ({
  name,
  url,
  weight: 1,
  parallel: 2,
  maxConcurrency: 0,
  modelConcurrency: 2,
  maxLoadedModels: 0,
});

describe('BackendRegistry membership', () => {
  let config: BalancerConfig;
  beforeEach(() => (config = loadBalancerConfig({ OLLAMA_BACKENDS: 'http://static:11434' })));

  it('adds a discovered backend once, refuses a name taken by another source or URL', () => {
    const r = new BackendRegistry(config);
    const changes: string[] = [];
    r.onMembership((b, c) => changes.push(`${c} ${b.name}`));
    const a = r.add(cfg('10.0.0.1:11434', 'http://10.0.0.1:11434'), 'dns');
    expect(a?.source).toBe('dns');
    expect(r.add(cfg('10.0.0.1:11434', 'http://10.0.0.1:11434'), 'dns')).toBe(a);
    expect(r.add(cfg('10.0.0.1:11434', 'http://10.0.0.9:11434'), 'dns')).toBeNull();
    expect(r.add(cfg('10.0.0.1:11434', 'http://10.0.0.1:11434'), 'registered')).toBeNull();
    expect(r.add(cfg('static:11434'), 'registered')).toBeNull();
    expect(r.backends.map((b) => b.name)).toEqual(['static:11434', '10.0.0.1:11434']);
    expect(changes).toEqual(['added 10.0.0.1:11434']);
  });

  it('retiring: unavailable at once, removed only when its last request ends; a configured backend never retires', () => {
    const r = new BackendRegistry(config);
    const b = r.add(cfg('gpu-1'), 'registered')!;
    b.acquire('m');
    r.retire('gpu-1', 'deregistered');
    expect(b.isAvailable()).toBe(false);
    expect(r.get('gpu-1')).toBe(b);
    r.capacityChanged();
    expect(r.get('gpu-1')).toBe(b);
    b.release('m');
    r.capacityChanged();
    expect(r.get('gpu-1')).toBeUndefined();
    expect(r.backends.map((x) => x.name)).toEqual(['static:11434']);

    r.retire('static:11434', 'no');
    expect(r.get('static:11434')?.retiring).toBeNull();
  });

  it('a retiring backend that is added again comes back with its state', () => {
    const r = new BackendRegistry(config);
    const b = r.add(cfg('10.0.0.2:11434', 'http://10.0.0.2:11434'), 'dns')!;
    b.acquire(null);
    b.served = 7;
    r.retire(b.name, 'gone from DNS');
    expect(r.add(cfg('10.0.0.2:11434', 'http://10.0.0.2:11434'), 'dns')).toBe(b);
    expect(b.retiring).toBeNull();
    expect(b.isAvailable()).toBe(true);
    b.release(null);
    r.capacityChanged();
    expect(r.get(b.name)).toBe(b);
  });
});

describe('InMemoryRegisteredBackends', () => {
  const reg = (name: string, ollamaUrl: string, expiresAt: number) => ({ name, ollamaUrl, expiresAt });

  it('holds a name for its URLs until it expires, one name per server, and a bounded count', async () => {
    const s = new InMemoryRegisteredBackends();
    expect(await s.upsert(reg('a', 'http://x:1', 1000), 0, 2)).toEqual({ ok: true, created: true });
    expect(await s.upsert(reg('a', 'http://x:1', 2000), 500, 2)).toEqual({ ok: true, created: false });
    expect(await s.upsert(reg('a', 'http://y:1', 2000), 600, 2)).toMatchObject({ ok: false, status: 409 });
    expect(await s.upsert(reg('b', 'http://x:1', 2000), 600, 2)).toMatchObject({ ok: false, status: 409 });
    expect(await s.upsert(reg('b', 'http://y:1', 2000), 600, 2)).toMatchObject({ ok: true });
    expect(await s.upsert(reg('c', 'http://z:1', 2000), 600, 2)).toMatchObject({ ok: false, status: 429 });
    // Past a's expiry its name and its URL are free.
    expect((await s.list(2000)).map((r) => r.name)).toEqual([]);
    expect(await s.upsert(reg('a', 'http://y:1', 5000), 2000, 2)).toEqual({ ok: true, created: true });
    expect(await s.remove('a')).toBe(true);
    expect(await s.remove('a')).toBe(false);
  });
});
