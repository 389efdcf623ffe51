import fc from 'fast-check';
import { planAnswer, type ChatInput } from './plan';
import { Rng, valueForSchema } from './schema';
import { splitJsonTokens } from './text';

const cfg = { defaultOutputTokens: 24, maxOutputTokens: 4096, thinkingTokens: 5, seed: 42 };
const input = (messages: ChatInput['messages'], extra: Partial<ChatInput> = {}): ChatInput => ({
  messages,
  tools: [],
  logprobs: false,
  topLogprobs: 0,
  ...extra,
});

describe('planAnswer', () => {
  it('continues any prefix of the answer (chunk boundary or inside a chunk) so that prefix + rest == answer', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.integer({ min: 0, max: 2 ** 31 }),
        fc.boolean(),
        fc.nat(),
        (question, seed, thinking, cutAt) => {
          const ask = [{ role: 'user', content: question }];
          const whole = planAnswer(input(ask, { seed }), { thinking, prefill: true }, cfg);
          const text = whole.content.join('');
          const cut = 1 + (cutAt % (text.length - 1));
          const prefix = text.slice(0, cut);
          const rest = planAnswer(
            input([...ask, { role: 'assistant', content: prefix }], { seed }),
            { thinking, prefill: true },
            cfg,
          );
          expect(prefix + rest.content.join('')).toBe(text);
          expect(rest.thinking).toEqual([]);
          expect(rest.continued).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('JSON answers split into chunks that join back to the same text', () => {
    fc.assert(
      fc.property(fc.json(), (json) => {
        expect(splitJsonTokens(json).join('')).toBe(json);
      }),
    );
  });

  it('schema values are deterministic per seed', () => {
    const schema = {
      type: 'object',
      properties: { a: { type: 'array', items: { type: 'integer' } }, b: { $ref: '#/$defs/B' } },
      $defs: { B: { enum: ['x', 'y'] } },
    };
    expect(valueForSchema(schema, new Rng(9))).toEqual(valueForSchema(schema, new Rng(9)));
    expect(['x', 'y']).toContain((valueForSchema(schema, new Rng(9)) as any).b);
  });
});
