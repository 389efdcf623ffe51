import { loadBalancerConfig } from '../config/balancer-config';
import { resolvePriority } from './priority-class';

const config = loadBalancerConfig({
  OLLAMA_BACKENDS: 'http://gpu1:11434',
  API_KEYS: 'chat:secretkey1,jobs:secretkey2',
  API_KEY_LIMITS: 'chat:class=interactive,weight=3;jobs:class=batch',
});
const [chat, jobs] = config.apiKeys;

describe('resolvePriority', () => {
  it("takes the key's class and weight, the default class without a key", () => {
    expect(resolvePriority(config.priority, chat, undefined)).toEqual({
      ok: true,
      identity: { cls: 0, key: 'chat', weight: 3 },
    });
    expect(resolvePriority(config.priority, jobs, undefined)).toEqual({
      ok: true,
      identity: { cls: 2, key: 'jobs', weight: 1 },
    });
    expect(resolvePriority(config.priority, null, undefined)).toEqual({
      ok: true,
      identity: { cls: 1, key: '', weight: 1 },
    });
  });

  it('lets X-Priority lower a class but never raise it', () => {
    expect(resolvePriority(config.priority, chat, 'batch')).toMatchObject({ identity: { cls: 2 } });
    expect(resolvePriority(config.priority, chat, ' Sheddable ')).toMatchObject({ identity: { cls: 3 } });
    expect(resolvePriority(config.priority, jobs, 'interactive')).toMatchObject({ identity: { cls: 2 } });
    expect(resolvePriority(config.priority, null, 'interactive')).toMatchObject({ identity: { cls: 1 } });
  });

  it('refuses a class that does not exist, naming the choices', () => {
    expect(resolvePriority(config.priority, chat, 'urgent')).toEqual({
      ok: false,
      message: 'X-Priority must name a class: one of interactive, standard, batch, sheddable (got "urgent")',
    });
  });
});
