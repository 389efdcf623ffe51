import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { AgentConfig } from './config/agent.config';

async function bootstrap(): Promise<void> {
  const logger = new Logger('gpu-agent');
  let app;
  try {
    // abortOnError false: a bad setting must exit with its message, not a core dump.
    app = await NestFactory.create(AppModule, { abortOnError: false, logger: ['log', 'warn', 'error'] });
  } catch (e) {
    logger.error((e as Error).message);
    process.exit(1);
  }
  app.enableShutdownHooks();
  const cfg = app.get<AgentConfig>('CONFIGURATION(agent)');
  await app.listen(cfg.port);
  logger.log(`listening on :${cfg.port} (Ollama ${cfg.ollamaUrl}, NVML ${cfg.nvmlLibraryPath ?? 'libnvidia-ml.so.1'})`);
}

void bootstrap();
