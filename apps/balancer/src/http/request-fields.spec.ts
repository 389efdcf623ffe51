import { canonicalKeys, foldKey, modelField, nestsDeeperThan } from './request-fields';

describe('request fields', () => {
  it('measures nesting without parsing, ignoring brackets inside strings', () => {
    expect(nestsDeeperThan(Buffer.from('{"a":[1,2,{"b":[3]}]}'), 4)).toBe(false);
    expect(nestsDeeperThan(Buffer.from('{"a":[1,2,{"b":[3]}]}'), 3)).toBe(true);
    expect(nestsDeeperThan(Buffer.from(`{"s":"${'['.repeat(500)}"}`), 10)).toBe(false);
    expect(nestsDeeperThan(Buffer.from(`{"s":"a\\"${'['.repeat(500)}"}`), 10)).toBe(false);
    expect(nestsDeeperThan(Buffer.from('['.repeat(101) + ']'.repeat(101)))).toBe(true);
    // Many brackets side by side are not depth.
    expect(nestsDeeperThan(Buffer.from(`[${'[1],'.repeat(1000)}[2]]`))).toBe(false);
  });

  it('folds keys as Go matches them: ASCII case, long s and the Kelvin sign', () => {
    expect(foldKey('MoDeL')).toBe('model');
    expect(foldKey('ſtream')).toBe('stream');
    expect(foldKey('\u212Aeep_alive')).toBe('keep_alive');
    // Not a general Unicode lower-casing: ß is not ss.
    expect(foldKey('meßages')).toBe('meßages');
  });

  it('reads case-variant keys as the backend will, and refuses two spellings of one field', () => {
    expect(canonicalKeys({ MODEL: 'x', prompt: 'p' })).toEqual({ model: 'x', prompt: 'p' });
    const plain = { model: 'x' };
    expect(canonicalKeys(plain)).toBe(plain);
    expect(canonicalKeys({ model: 'a', MODEL: 'b' })).toMatch(/"model" and "MODEL" name the same field/);
    const proto = JSON.parse('{"__proto__":{"polluted":true},"Model":"x"}');
    const c = canonicalKeys(proto) as Record<string, unknown>;
    expect(Object.keys(c)).toEqual(['__proto__', 'model']);
    expect(({} as any).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(c)).toBe(Object.prototype);
  });

  it('takes the model only when it is a string (never converts an object)', () => {
    expect(modelField({ model: 'a', name: 'b' })).toBe('a');
    expect(modelField({ name: 'b' })).toBe('b');
    expect(modelField({ model: { toString: 1 } })).toBe('');
    expect(modelField({ model: ['a'] })).toBe('');
  });
});
