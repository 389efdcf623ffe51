import { Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { RequestListener, RequestRecord, RequestRecords } from '../proxy/request-records';
import { UsageService } from '../usage/usage.service';

/** Feeds each model request's token usage (read from its final chunk or event) to its key's ledger. */
@Injectable()
export class UsageRecorder implements OnModuleInit, OnModuleDestroy, RequestListener {
  constructor(
    private readonly records: RequestRecords,
    private readonly usage: UsageService,
  ) {}

  onModuleInit(): void {
    this.records.listeners.push(this);
  }

  onModuleDestroy(): void {
    const i = this.records.listeners.indexOf(this);
    if (i >= 0) this.records.listeners.splice(i, 1);
  }

  onRequestEnd(r: RequestRecord): void {
    // Only answers a backend gave (a model request that reached one); refusals use no tokens.
    if (r.apiKey === null || r.backend === null || r.priorityClass === null) return;
    const counted = r.promptTokens !== undefined || r.outputTokens !== undefined;
    this.usage.record(
      r.apiKey,
      counted ? { promptTokens: r.promptTokens ?? 0, outputTokens: r.outputTokens ?? 0 } : null,
    );
  }
}
