import { Injectable } from '@nestjs/common';

/**
 * Which backend each conversation last went to (for its prompt cache there). The one owner of the
 * pins, so that a shared store can replace this one; the rule for when to stay is in RoutingService.
 */
export abstract class SessionAffinity {
  /** The backend name the session is pinned to, if any. */
  abstract pinned(sessionKey: string): string | undefined;
  /** Pins (or re-pins) the session to a backend. */
  abstract pin(sessionKey: string, backend: string): void;
}

const MAX_SESSIONS = 10_000;

/** Pins in this process, the least recently pinned evicted first beyond 10,000 sessions. */
@Injectable()
export class LocalSessionAffinity extends SessionAffinity {
  /** Session key -> backend name, in insertion order for bounded eviction. */
  private readonly sessions = new Map<string, string>();

  pinned(sessionKey: string): string | undefined {
    return this.sessions.get(sessionKey);
  }

  pin(sessionKey: string, backend: string): void {
    this.sessions.delete(sessionKey);
    this.sessions.set(sessionKey, backend);
    if (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
  }
}
