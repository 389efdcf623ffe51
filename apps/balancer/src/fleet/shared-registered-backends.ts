import { SharedState } from '../shared-state';
import { InMemoryRegisteredBackends, RegisteredBackendStore, Registration, UpsertResult } from './registered-backends';

/**
 * Registrations every replica sees (REDIS_URL): one hash in Redis, each upsert checked and stored
 * by one Lua script, so two replicas cannot both hand out a name or an Ollama URL. A copy is kept
 * here too: while Redis is away, registrations and heartbeats go on against it (this replica's view).
 */
export class SharedRegisteredBackends implements RegisteredBackendStore {
  private readonly local = new InMemoryRegisteredBackends();

  constructor(private readonly shared: SharedState) {}

  async upsert(reg: Registration, now: number, max: number): Promise<UpsertResult> {
    const mine = await this.local.upsert(reg, now, max);
    if (!this.shared.up) return mine;
    try {
      const v = await this.shared.registrations.upsert(reg, now, max);
      if (v.ok) return { ok: true, created: v.created };
      if (!mine.ok || mine.created) await this.local.remove(reg.name);
      if (v.conflict === 'full')
        return { ok: false, status: 429, error: `${max} backends are registered already (REGISTRATION_MAX_BACKENDS)` };
      if (v.conflict === 'url')
        return { ok: false, status: 409, error: `${reg.ollamaUrl} is already registered as '${v.heldBy}'` };
      return {
        ok: false,
        status: 409,
        error: `backend name '${reg.name}' is registered with other URLs (${v.heldUrl}) until ${new Date(v.heldUntil).toISOString()}`,
      };
    } catch {
      return mine;
    }
  }

  async remove(name: string): Promise<boolean> {
    const here = await this.local.remove(name);
    if (!this.shared.up) return here;
    try {
      return (await this.shared.registrations.remove(name)) || here;
    } catch {
      return here;
    }
  }

  async list(now: number): Promise<Registration[]> {
    if (this.shared.up) {
      try {
        return await this.shared.registrations.list<Registration>(now);
      } catch {
        // Redis went away: this replica's view
      }
    }
    return this.local.list(now);
  }
}
