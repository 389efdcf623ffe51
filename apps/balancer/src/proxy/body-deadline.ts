import type { IncomingMessage, ServerResponse } from 'http';
import { sendError } from '../http/errors';

/** How long the rest of a cut-off body is still read (and dropped) so the client can see the answer. */
const LINGER_MS = 2000;

interface Watched {
  res: ServerResponse;
  startedAt: number;
  /** Blob uploads may be long but must keep moving: their clock restarts whenever bytes arrive. */
  moving: boolean;
  lastBytes: number;
  lastAt: number;
}

/**
 * BODY_TIMEOUT_MS for every request that carries a body: it must arrive in full within the limit
 * (a blob upload: with no pause that long), or the client gets 408 (and the connection closes
 * unless the rest of the body comes within a short grace). A
 * client sending a byte at a time can otherwise hold a socket, a buffer and a request slot for as
 * long as it likes. One sweep checks them all (no timer per request); a limit fires at most a
 * quarter of it late, never early.
 */
export class BodyDeadlines {
  private readonly watched = new Map<IncomingMessage, Watched>();
  private timer: NodeJS.Timeout | null = null;
  private readonly sweepMs: number;
  /**
   * Forgets a request the moment its body is in (one function for all, `this` is the request).
   * Left to the sweep, every request and response of the last sweep interval stayed reachable,
   * outlived the young generation and made the old-space GC work: half the c=64 throughput.
   */
  private readonly arrived: (this: IncomingMessage) => void;

  constructor(private readonly timeoutMs: number) {
    this.sweepMs = Math.max(25, Math.min(1000, Math.floor(timeoutMs / 4)));
    const watched = this.watched;
    this.arrived = function (this: IncomingMessage) {
      watched.delete(this);
    };
  }

  watch(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (req.complete) return;
    const cl = req.headers['content-length'];
    if (req.headers['transfer-encoding'] === undefined && (cl === undefined || cl === '0')) return;
    const now = Date.now();
    req.on('end', this.arrived);
    this.watched.set(req, {
      res,
      startedAt: now,
      moving: path.startsWith('/api/blobs/'),
      lastBytes: req.socket?.bytesRead ?? 0,
      lastAt: now,
    });
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.sweepMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.watched.clear();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [req, w] of this.watched) {
      if (req.complete || req.destroyed || w.res.destroyed) {
        this.watched.delete(req);
        continue;
      }
      if (w.moving) {
        const bytes = req.socket?.bytesRead ?? 0;
        if (bytes !== w.lastBytes) {
          w.lastBytes = bytes;
          w.lastAt = now;
          continue;
        }
        if (now - w.lastAt < this.timeoutMs) continue;
      } else if (now - w.startedAt < this.timeoutMs) continue;
      this.watched.delete(req);
      this.cut(req, w.res, w.moving);
    }
    if (this.watched.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private cut(req: IncomingMessage, res: ServerResponse, moving: boolean): void {
    const socket = req.socket;
    if (res.headersSent) {
      socket?.destroy();
      return;
    }
    sendError(
      req,
      res,
      408,
      moving
        ? `request body stalled: no data for ${this.timeoutMs} ms (BODY_TIMEOUT_MS)`
        : `request body not received within ${this.timeoutMs} ms (BODY_TIMEOUT_MS)`,
    );
    // Closing at once while the client still sends would reset the connection and lose the 408 on
    // its side: the rest of the body is read and dropped for a short grace, then the connection goes.
    const grace = setTimeout(() => {
      if (!req.complete) socket?.destroy();
    }, LINGER_MS);
    grace.unref();
  }
}
