import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { AgentTokenGuard } from './auth/agent-token.guard';
import { agentConfig } from './config/agent.config';
import { HealthController } from './health/health.controller';
import { NvmlHealthIndicator } from './health/nvml.health';
import { MetricsController } from './metrics/metrics.controller';
import { MetricsService } from './metrics/metrics.service';
import { gpuReaderProvider } from './nvml/gpu-reader.provider';
import { GpuStateService } from './nvml/gpu-state.service';
import { OllamaStateService } from './ollama/ollama-state.service';
import { RegistrationService } from './registration/registration.service';
import { StatusController } from './status/status.controller';
import { StatusService } from './status/status.service';

@Module({
  imports: [
    // Settings come from the environment only, validated once (agent.config.ts).
    ConfigModule.forRoot({ ignoreEnvFile: true, load: [agentConfig] }),
    ScheduleModule.forRoot(),
    TerminusModule.forRoot({ logger: false }),
  ],
  controllers: [StatusController, MetricsController, HealthController],
  providers: [
    gpuReaderProvider,
    GpuStateService,
    OllamaStateService,
    StatusService,
    MetricsService,
    NvmlHealthIndicator,
    AgentTokenGuard,
    RegistrationService,
  ],
})
export class AppModule {}
