import { Inject, Injectable } from '@nestjs/common';
import { SHARED_STATE, SharedState } from '../shared-state';
import { LocalSessionAffinity, SessionAffinity } from './session-affinity';

/**
 * Session pins shared by every replica: each pin is written to Redis (a key with a TTL renewed on
 * use, SESSION_PIN_TTL_MS) as well as kept here; a placement reads the conversation's pin from Redis
 * first (load), so a conversation pinned through one replica continues on the same backend through
 * another. While Redis is away, the pins this replica knows still hold.
 */
@Injectable()
export class SharedSessionAffinity extends SessionAffinity {
  private readonly local = new LocalSessionAffinity();

  constructor(@Inject(SHARED_STATE) private readonly shared: SharedState) {
    super();
  }

  pinned(sessionKey: string): string | undefined {
    return this.local.pinned(sessionKey);
  }

  pin(sessionKey: string, backend: string): void {
    this.local.pin(sessionKey, backend);
    this.shared.pins.set(sessionKey, backend);
  }

  /** Reads the session's pin from Redis into this replica's (never throws: a miss keeps the local pin). */
  async load(sessionKey: string): Promise<void> {
    if (!this.shared.up) return;
    try {
      const backend = await this.shared.pins.get(sessionKey);
      if (backend !== null) this.local.pin(sessionKey, backend);
    } catch {
      // Redis away or slow: the pin this replica knows, if any, decides.
    }
  }
}
