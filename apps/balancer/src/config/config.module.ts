import { Global, Module } from '@nestjs/common';
import { ConfigModule, ConfigType, registerAs } from '@nestjs/config';
import { BALANCER_CONFIG, loadBalancerConfig } from './balancer-config';

/** Validated once, when the app is created; a bad value stops start-up naming the setting. */
export const balancerConfig = registerAs('balancer', () => loadBalancerConfig(process.env));

@Global()
@Module({
  imports: [ConfigModule.forRoot({ ignoreEnvFile: true, load: [balancerConfig] })],
  providers: [{ provide: BALANCER_CONFIG, inject: [balancerConfig.KEY], useFactory: (c: ConfigType<typeof balancerConfig>) => c }],
  exports: [BALANCER_CONFIG],
})
export class BalancerConfigModule {}
