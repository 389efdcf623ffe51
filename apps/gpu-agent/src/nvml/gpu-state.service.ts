import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import { SchedulerRegistry } from '@nestjs/schedule';
import { GpuReader, GpuSnapshot, toNvmlError } from '@app/nvml';
import { agentConfig } from '../config/agent.config';
import { GPU_READER } from './gpu-reader.provider';

export interface NvmlFailure {
  message: string;
  code: string;
  nvmlReturn: number;
  at: Date;
}

const INTERVAL_NAME = 'gpu-agent.nvml-poll';

/**
 * Polls NVML on NVML_POLL_INTERVAL_MS and keeps the latest reading. NVML failures never escape:
 * they are kept as `failure` (reported by /status and readiness) until a read succeeds again.
 */
@Injectable()
export class GpuStateService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(GpuStateService.name);
  private inFlight?: Promise<void>;
  private lastLoggedCode?: string;
  private stopped = false;
  snapshot: GpuSnapshot | null = null;
  failure: NvmlFailure | null = null;

  constructor(
    @Inject(GPU_READER) private readonly reader: GpuReader,
    @Inject(agentConfig.KEY) private readonly cfg: ConfigType<typeof agentConfig>,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  onModuleInit(): void {
    this.scheduler.addInterval(
      INTERVAL_NAME,
      setInterval(() => void this.poll(), this.cfg.nvmlPollIntervalMs),
    );
    void this.poll();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.scheduler.doesExist('interval', INTERVAL_NAME)) this.scheduler.deleteInterval(INTERVAL_NAME);
    await this.inFlight;
    await this.reader.close();
  }

  /** NVML answered on the latest poll. */
  get available(): boolean {
    return this.snapshot !== null && this.failure === null;
  }

  /** One poll; a call while one is running waits for that one instead of starting another. */
  poll(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.inFlight ??= this.readOnce().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async readOnce(): Promise<void> {
    try {
      this.snapshot = await this.reader.read();
      if (this.failure) this.logger.log('NVML readings are back');
      this.failure = null;
      this.lastLoggedCode = undefined;
    } catch (e) {
      const err = toNvmlError(e);
      this.failure = { message: err.message, code: err.code, nvmlReturn: err.nvmlReturn, at: new Date() };
      this.snapshot = null;
      if (this.lastLoggedCode !== err.code) this.logger.warn(`NVML unavailable: ${err.message} (${err.code})`);
      this.lastLoggedCode = err.code;
    }
  }
}
