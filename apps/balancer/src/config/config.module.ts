import { Global, Module } from '@nestjs/common';
import { BALANCER_CONFIG, loadBalancerConfig } from './balancer-config';

/**
 * The validated settings, read from the environment once, when the app is created (tests override
 * BALANCER_CONFIG with their own object, and then nothing is read). A bad value stops start-up
 * naming the setting: `startBalancer` turns the ConfigError into a message and exit code 2.
 */
@Global()
@Module({
  providers: [{ provide: BALANCER_CONFIG, useFactory: () => loadBalancerConfig(process.env) }],
  exports: [BALANCER_CONFIG],
})
export class BalancerConfigModule {}
