import type { ApiKeyConfig, PriorityConfig } from '../config/balancer-config';

/** Who a request is in the placement queue: its class (index, 0 highest), key and weight. */
export interface QueueIdentity {
  cls: number;
  /** The key's name; '' for requests without one (no keys configured, or the admin token). */
  key: string;
  weight: number;
}

export type PriorityOutcome = { ok: true; identity: QueueIdentity } | { ok: false; message: string };

/**
 * A request's class: its key's (or DEFAULT_PRIORITY_CLASS without a key), lowered by an
 * `X-Priority: <class>` header when that names a lower class. A header never raises a class: a
 * higher one is ignored. An unknown class name is a client error (400), named with the choices.
 */
export function resolvePriority(
  priority: PriorityConfig,
  key: ApiKeyConfig | null,
  header: string | string[] | undefined,
): PriorityOutcome {
  const own = priority.classes.indexOf(key?.priorityClass ?? priority.defaultClass);
  let cls = own < 0 ? priority.classes.indexOf(priority.defaultClass) : own;
  if (header !== undefined) {
    const asked = (Array.isArray(header) ? header[header.length - 1] : header).trim().toLowerCase();
    const i = priority.classes.findIndex((c) => c.toLowerCase() === asked);
    if (i < 0)
      return {
        ok: false,
        message: `X-Priority must name a class: one of ${priority.classes.join(', ')} (got ${JSON.stringify(asked.slice(0, 40))})`,
      };
    if (i > cls) cls = i;
  }
  return { ok: true, identity: { cls, key: key?.name ?? '', weight: key?.weight ?? 1 } };
}
