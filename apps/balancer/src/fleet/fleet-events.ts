import { Injectable } from '@nestjs/common';
import type { Backend } from './backend';

/** A change in a backend's state: healthy/unhealthy, ejected, cordoned/uncordoned. */
export interface BackendEvent {
  at: number;
  backend: string;
  event: string;
  detail: string;
}

const KEEP_EVENTS = 100;

/** The fleet's recent events (for the status view) and the listeners told of each (metrics, logs). */
@Injectable()
export class FleetEvents {
  readonly events: BackendEvent[] = [];
  readonly listeners: ((e: BackendEvent) => void)[] = [];

  note(b: Backend, event: string, detail: string): void {
    const e: BackendEvent = { at: Date.now(), backend: b.name, event, detail };
    this.events.push(e);
    if (this.events.length > KEEP_EVENTS) this.events.shift();
    for (const l of this.listeners) l(e);
  }
}
