import { installProcessGuard } from './bootstrap';

describe('process guard', () => {
  it('logs an error that escaped every handler and keeps the process up', () => {
    const before = {
      ex: process.listeners('uncaughtException'),
      rej: process.listeners('unhandledRejection'),
      out: process.stdout.listeners('error'),
      err: process.stderr.listeners('error'),
    };
    const lines: string[] = [];
    delete (process as any).__balancerGuard;
    installProcessGuard({ error: (m: unknown) => void lines.push(String(m)) });
    try {
      const ex = process.listeners('uncaughtException').filter((l) => !before.ex.includes(l));
      const rej = process.listeners('unhandledRejection').filter((l) => !before.rej.includes(l));
      expect(ex).toHaveLength(1);
      expect(rej).toHaveLength(1);
      (ex[0] as (e: Error) => void)(new TypeError('Cannot convert object to primitive value'));
      (rej[0] as (e: unknown) => void)({ toString: 1 });
      expect(lines[0]).toMatch(
        /uncaught exception \(kept serving\): TypeError: Cannot convert object to primitive value/,
      );
      expect(lines[1]).toMatch(/unhandled rejection \(kept serving\): \{"toString":1\}/);
      // A write error on stdout or stderr (a log reader gone: EPIPE) is heard, and told once.
      const onOut = process.stdout.listeners('error').filter((l) => !before.out.includes(l));
      expect(onOut).toHaveLength(1);
      expect(process.stderr.listeners('error').filter((l) => !before.err.includes(l))).toHaveLength(1);
      const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
      (onOut[0] as (e: Error) => void)(epipe);
      (onOut[0] as (e: Error) => void)(epipe);
      expect(lines.slice(2)).toEqual(['stdout failed (EPIPE): its log lines are dropped from now on']);
      // A second install adds nothing.
      installProcessGuard({ error: () => undefined });
      expect(process.listeners('uncaughtException').length).toBe(before.ex.length + 1);
    } finally {
      for (const l of process.listeners('uncaughtException'))
        if (!before.ex.includes(l)) process.off('uncaughtException', l);
      for (const l of process.listeners('unhandledRejection'))
        if (!before.rej.includes(l)) process.off('unhandledRejection', l);
      for (const [out, was] of [
        [process.stdout, before.out],
        [process.stderr, before.err],
      ] as const)
        for (const l of out.listeners('error')) if (!was.includes(l)) out.off('error', l as (e: Error) => void);
      delete (process as any).__balancerGuard;
    }
  });
});
