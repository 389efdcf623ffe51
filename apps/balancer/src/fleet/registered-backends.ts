/**
 * The agents' registrations, behind an interface so that replicas can share them: this file's
 * in-memory store serves one process; a Redis-backed one (shared-state/) gives every replica the
 * same list, each replica's AgentRegistrations reconciling its own BackendRegistry with it.
 */
export interface Registration {
  name: string;
  ollamaUrl: string;
  agentUrl?: string;
  parallel?: number;
  maxLoadedModels?: number;
  /** Epoch ms after which, without a heartbeat, the registration is dropped. */
  expiresAt: number;
}

export type UpsertResult =
  | { ok: true; created: boolean }
  | { ok: false; status: 409; error: string }
  | { ok: false; status: 429; error: string };

export interface RegisteredBackendStore {
  /**
   * Registers, or refreshes (the heartbeat). Atomic per store: the name must not be held by a live
   * registration with other URLs, the Ollama URL not by another name, and the count stays within
   * `max`. A registration that expired no longer holds anything.
   */
  upsert(reg: Registration, now: number, max: number): Promise<UpsertResult>;
  /** Drops a registration; false when there was none. */
  remove(name: string): Promise<boolean>;
  /** Live registrations (expired ones are dropped on the way). */
  list(now: number): Promise<Registration[]>;
}

export const REGISTERED_BACKEND_STORE = Symbol('REGISTERED_BACKEND_STORE');

function sameUrls(a: Registration, b: Registration): boolean {
  return a.ollamaUrl === b.ollamaUrl && (a.agentUrl ?? null) === (b.agentUrl ?? null);
}

/** One process's registrations (the default when there is no shared state). */
export class InMemoryRegisteredBackends implements RegisteredBackendStore {
  private readonly byName = new Map<string, Registration>();

  private expire(now: number): void {
    for (const [name, r] of this.byName) if (r.expiresAt <= now) this.byName.delete(name);
  }

  upsert(reg: Registration, now: number, max: number): Promise<UpsertResult> {
    this.expire(now);
    const held = this.byName.get(reg.name);
    if (held && !sameUrls(held, reg)) {
      return Promise.resolve({
        ok: false,
        status: 409,
        error: `backend name '${reg.name}' is registered with other URLs (${held.ollamaUrl}) until ${new Date(held.expiresAt).toISOString()}`,
      });
    }
    for (const other of this.byName.values()) {
      if (other.name !== reg.name && other.ollamaUrl === reg.ollamaUrl) {
        return Promise.resolve({
          ok: false,
          status: 409,
          error: `${reg.ollamaUrl} is already registered as '${other.name}'`,
        });
      }
    }
    if (!held && this.byName.size >= max)
      return Promise.resolve({
        ok: false,
        status: 429,
        error: `${max} backends are registered already (REGISTRATION_MAX_BACKENDS)`,
      });
    this.byName.set(reg.name, { ...reg });
    return Promise.resolve({ ok: true, created: !held });
  }

  remove(name: string): Promise<boolean> {
    return Promise.resolve(this.byName.delete(name));
  }

  list(now: number): Promise<Registration[]> {
    this.expire(now);
    return Promise.resolve([...this.byName.values()].map((r) => ({ ...r })));
  }
}
