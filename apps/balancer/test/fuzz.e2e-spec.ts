import { Fleet, startFleet } from '../../../tools/fuzz/fleet';
import { fuzzRun, FuzzRunner } from '../../../tools/fuzz/run';

/**
 * Property-based fuzzing of the real balancer process (the built dist/ when it is current, else
 * the sources): fast-check generates hostile requests for every route (wrong types, objects with
 * their own toString, case-variant and duplicate keys, __proto__, deep nesting, huge numbers,
 * invalid UTF-8, lone surrogates, huge, slow, pipelined, aborted and mis-framed requests, odd
 * paths, methods and headers), and after every case the process must live and answer
 * /health/live, every answer must be a valid one or an error in its surface's shape (never a 500
 * for client input, never a hang), in-flight and queue counts must return to zero, no backend may
 * be ejected and no model may fall out of the inventory, and every log line must be strict JSON.
 * A seeded, bounded run here; the long campaign is `npm run fuzz -- --cases N`.
 */
const SEED = 20261201;
const CASES = 120;

describe('fuzzing the real process', () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await startFleet();
  }, 120_000);
  afterAll(async () => fleet?.stop());

  it(`${CASES} seeded cases (seed ${SEED}): no crash, hang, 500, leak, ejection, lost model or unparsable log line`, async () => {
    const runner = new FuzzRunner(fleet);
    await runner.init();
    const failure = await fuzzRun(runner, SEED, CASES);
    expect(failure).toBeNull();
    expect(runner.cases).toBe(CASES);
  }, 300_000);
});
