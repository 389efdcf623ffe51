import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { ConfigType } from '@nestjs/config';
import { SchedulerRegistry } from '@nestjs/schedule';
import { agentConfig } from '../config/agent.config';

export interface OllamaLoadedModel {
  name: string;
  model: string;
  size: number;
  sizeVram: number;
  expiresAt: string | null;
  digest?: string;
}

export interface OllamaState {
  reachable: boolean;
  error: string | null;
  checkedAt: Date | null;
  loaded: OllamaLoadedModel[];
  models: { name: string; size: number }[];
}

const INTERVAL_NAME = 'gpu-agent.ollama-poll';

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
const str = (v: unknown) => (typeof v === 'string' ? v : '');

/** Polls the local Ollama's /api/ps (loaded models, VRAM) and /api/tags (models on disk). */
@Injectable()
export class OllamaStateService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(OllamaStateService.name);
  private inFlight?: Promise<void>;
  private stopped = false;
  private readonly abort = new AbortController();
  state: OllamaState = { reachable: false, error: 'not checked yet', checkedAt: null, loaded: [], models: [] };

  constructor(
    @Inject(agentConfig.KEY) private readonly cfg: ConfigType<typeof agentConfig>,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  get url(): string {
    return this.cfg.ollamaUrl;
  }

  onModuleInit(): void {
    this.scheduler.addInterval(
      INTERVAL_NAME,
      setInterval(() => void this.poll(), this.cfg.ollamaPollIntervalMs),
    );
    void this.poll();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    if (this.scheduler.doesExist('interval', INTERVAL_NAME)) this.scheduler.deleteInterval(INTERVAL_NAME);
    this.abort.abort();
    await this.inFlight;
  }

  poll(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.inFlight ??= this.check().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async getJson(path: string): Promise<Record<string, unknown>> {
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.cfg.ollamaTimeoutMs)]);
    const res = await fetch(new URL(path, this.cfg.ollamaUrl), { signal, headers: { accept: 'application/json' } });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`GET ${path}: HTTP ${res.status}`);
    }
    const body = (await res.json()) as unknown;
    if (!body || typeof body !== 'object') throw new Error(`GET ${path}: not a JSON object`);
    return body as Record<string, unknown>;
  }

  private async check(): Promise<void> {
    try {
      const [ps, tags] = await Promise.all([this.getJson('/api/ps'), this.getJson('/api/tags')]);
      const loaded = (Array.isArray(ps.models) ? ps.models : []).map(
        (m: Record<string, unknown>): OllamaLoadedModel => {
          const out: OllamaLoadedModel = {
            name: str(m.name) || str(m.model),
            model: str(m.model) || str(m.name),
            size: num(m.size),
            sizeVram: num(m.size_vram),
            expiresAt: typeof m.expires_at === 'string' ? m.expires_at : null,
          };
          if (typeof m.digest === 'string') out.digest = m.digest;
          return out;
        },
      );
      const models = (Array.isArray(tags.models) ? tags.models : []).map((m: Record<string, unknown>) => ({
        name: str(m.name) || str(m.model),
        size: num(m.size),
      }));
      if (!this.state.reachable) this.logger.log(`Ollama at ${this.cfg.ollamaUrl} is reachable`);
      this.state = { reachable: true, error: null, checkedAt: new Date(), loaded, models };
    } catch (e) {
      if (this.stopped) return;
      const err = e as Error & { cause?: { code?: string } };
      const message =
        err.name === 'TimeoutError'
          ? `timed out after ${this.cfg.ollamaTimeoutMs} ms`
          : `${err.message}${err.cause?.code ? ` (${err.cause.code})` : ''}`;
      if (this.state.reachable || this.state.checkedAt === null)
        this.logger.warn(`Ollama at ${this.cfg.ollamaUrl} unreachable: ${message}`);
      this.state = { reachable: false, error: message, checkedAt: new Date(), loaded: [], models: [] };
    }
  }
}
