import { loadSharedStateConfig } from './shared-state-config';
import { loadBalancerConfig, ConfigError } from './balancer-config';

describe('shared-state settings', () => {
  it('are off without REDIS_URL, and a bad value stops start-up naming the setting', () => {
    expect(loadSharedStateConfig({}).url).toBeNull();
    expect(loadSharedStateConfig({ REDIS_URL: 'redis://redis:6379/0' })).toMatchObject({
      url: 'redis://redis:6379/0',
      leaseMs: 15_000,
      heartbeatMs: 5_000,
      commandTimeoutMs: 100,
    });
    expect(() => loadSharedStateConfig({ REDIS_URL: 'http://redis:6379' })).toThrow(
      /REDIS_URL="http:\/\/redis:6379\/?" must use redis:\/\/ or rediss:\/\//,
    );
    expect(() => loadSharedStateConfig({ REDIS_URL: 'redis://:s3cret@redis:6379/x' })).toThrow(
      /REDIS_URL=.*\*\*\*.*database number/,
    );
    expect(() => loadSharedStateConfig({ REDIS_URL: 'redis://:s3cret@redis:6379/x' })).not.toThrow(/s3cret/);
    expect(() =>
      loadSharedStateConfig({ REDIS_URL: 'redis://r', REDIS_LEASE_MS: '1000', REDIS_HEARTBEAT_MS: '600' }),
    ).toThrow(/REDIS_HEARTBEAT_MS="600" must be at most half of REDIS_LEASE_MS/);
    expect(() => loadSharedStateConfig({ REDIS_COMMAND_TIMEOUT_MS: 'fast' })).toThrow(
      /REDIS_COMMAND_TIMEOUT_MS="fast"/,
    );
    expect(() => loadSharedStateConfig({ REDIS_PREFIX: 'a b' })).toThrow(/REDIS_PREFIX="a b"/);
  });

  it('reach the balancer config, and a bad one is a ConfigError (exit 2 with the message)', () => {
    expect(loadBalancerConfig({}).sharedState.url).toBeNull();
    expect(loadBalancerConfig({ REDIS_URL: 'rediss://u:p@r:6380' }).sharedState.url).toBe('rediss://u:p@r:6380');
    expect(() => loadBalancerConfig({ REDIS_URL: 'localhost:6379' })).toThrow(ConfigError);
  });
});
