import type { ResolvedSimConfig } from './config';
import type { Scheduler } from './scheduler';

export interface SimCounters {
  requests: number;
  byRoute: Record<string, number>;
  byStatus: Record<string, number>;
  byModel: Record<string, number>;
  aborted: number;
  tokens: number;
  connections: number;
  refusedSockets: number;
  pulls: number;
}

/** What request jobs need from the server, kept narrow so jobs.ts does not import server.ts. */
export interface SimServerState {
  config: ResolvedSimConfig;
  sched: Scheduler;
  counters: SimCounters;
}

export function newCounters(): SimCounters {
  return {
    requests: 0,
    byRoute: {},
    byStatus: {},
    byModel: {},
    aborted: 0,
    tokens: 0,
    connections: 0,
    refusedSockets: 0,
    pulls: 0,
  };
}
