import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { agentConfig, parseAgentConfig } from './config/agent.config';

async function bootstrap(): Promise<void> {
  const logger = new Logger('gpu-agent');
  // Validate before Nest starts, so a bad setting prints one line (naming it) and exits 1.
  try {
    parseAgentConfig(process.env);
  } catch (e) {
    logger.error((e as Error).message);
    process.exit(1);
  }
  // abortOnError false: a start-up failure exits with its message instead of a core dump.
  const app = await NestFactory.create(AppModule, { abortOnError: false, logger: ['log', 'warn', 'error'] }).catch(
    (e: Error) => {
      logger.error(e.message);
      process.exit(1);
    },
  );
  app.enableShutdownHooks();
  const cfg = app.get<ReturnType<typeof parseAgentConfig>>(agentConfig.KEY);
  await app.listen(cfg.port);
  logger.log(`listening on :${cfg.port} (Ollama ${cfg.ollamaUrl}, NVML ${cfg.nvmlLibraryPath ?? 'libnvidia-ml.so.1'})`);
}

void bootstrap();
