import { Injectable } from '@nestjs/common';

/** Shared flag: set when SIGTERM arrives, so readiness turns 503 at once. */
@Injectable()
export class ShutdownState {
  draining = false;
}
