import * as fc from 'fast-check';
import { createHash } from 'crypto';
import { arr, fromValue, Json, lit, num, obj, raw, str, toBytes } from './json-text';
import { WirePlan, WireRequest } from './wire';

/** Credentials the fuzzed balancer knows (see fleet.ts): a full key, a key limited to one model, the admin token. */
export const FUZZ_KEY = 'sk-fuzz-full-0123456789';
export const FUZZ_LIMITED_KEY = 'sk-fuzz-limited-0123456789';
export const FUZZ_ADMIN = 'fuzz-admin-token-0123456789';
export const FUZZ_MODELS = ['llama3.2:latest', 'qwen2.5:0.5b', 'nomic-embed-text:latest'];

/** A batch: plans sent at once, each on its own connection. */
export interface FuzzCase {
  plans: WirePlan[];
}

const modelName = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'llama3.2',
      'llama3.2:latest',
      'qwen2.5:0.5b',
      'nomic-embed-text',
      'LLAMA3.2',
      'Llama3.2:Latest',
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'unknown:1b',
      '',
      ' ',
      ':',
      'a/b/c:d',
      '../../etc/passwd',
      'llama3.2\u0000',
      '\ud800',
      'x'.repeat(300),
      '%2e%2e',
      'llama3.2:latest:extra',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);

/** Values of the wrong type, hostile objects, odd strings and numbers. */
const weird: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(lit(null)),
  fc.boolean().map(lit),
  fc.integer().map(num),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(num),
  fc
    .constantFrom(
      '1e400',
      '-1e400',
      '123456789012345678901234567890',
      '-0',
      '1E-400',
      '0.0000000000000000000001',
      '9007199254740993',
    )
    .map(raw),
  fc.string({ maxLength: 30 }).map(str),
  fc.string({ unit: 'binary', maxLength: 20 }).map(str),
  fc.constantFrom('\ud800', 'a\udc00b', '\udbff\ud800', '\u0000', '\u2028\u2029', '\ufeff').map(str),
  fc
    .array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 6 })
    .map((b) => ({ t: 'bytes', b }) as Json),
  fc.constantFrom(
    obj([['toString', num(1)]]),
    obj([['valueOf', obj([])]]),
    obj([
      ['toString', obj([])],
      ['valueOf', num(1)],
    ]),
    obj([['toJSON', num(1)]]),
    obj([['__proto__', obj([['polluted', lit(true)]])]]),
    obj([['constructor', obj([['prototype', obj([['polluted', lit(true)]])]])]]),
    obj([['hasOwnProperty', num(1)]]),
    obj([['length', num(1e9)]]),
    arr([str('llama3.2'), str('qwen2.5:0.5b')]),
    arr([]),
    obj([]),
  ),
  fc.array(fc.string({ maxLength: 8 }).map(str), { maxLength: 3 }).map(arr),
  fc
    .record({ depth: fc.integer({ min: 1, max: 3000 }), open: fc.constantFrom('[' as const, '{' as const) })
    .map(({ depth, open }) => ({ t: 'nest', depth, open, inner: num(1) }) as Json),
);

const message = (content: Json): Json =>
  obj([
    ['role', str('user')],
    ['content', content],
  ]);

/** A valid-looking body per route, which mutations then bend. */
function template(path: string, model: string): [string, Json][] {
  const m = str(model);
  switch (path) {
    case '/api/generate':
      return [
        ['model', m],
        ['prompt', str('hi')],
        ['stream', lit(false)],
        ['options', obj([['num_predict', num(3)]])],
      ];
    case '/api/chat':
      return [
        ['model', m],
        [
          'messages',
          arr([
            obj([
              ['role', str('system')],
              ['content', str('be brief')],
            ]),
            message(str('hi')),
          ]),
        ],
        ['stream', lit(true)],
        ['options', obj([['num_predict', num(3)]])],
      ];
    case '/api/embed':
      return [
        ['model', m],
        ['input', arr([str('a'), str('b')])],
      ];
    case '/api/embeddings':
      return [
        ['model', m],
        ['prompt', str('a')],
      ];
    case '/api/show':
      return [['model', m]];
    case '/v1/chat/completions':
      return [
        ['model', m],
        ['messages', arr([message(str('hi'))])],
        ['max_tokens', num(3)],
        ['stream', lit(false)],
      ];
    case '/v1/completions':
      return [
        ['model', m],
        ['prompt', str('hi')],
        ['max_tokens', num(3)],
      ];
    case '/v1/embeddings':
      return [
        ['model', m],
        ['input', str('hi')],
      ];
    case '/v1/responses':
      return [
        ['model', m],
        ['input', str('hi')],
        ['max_output_tokens', num(3)],
      ];
    case '/v1/messages':
      return [
        ['model', m],
        ['max_tokens', num(3)],
        ['messages', arr([message(str('hi'))])],
      ];
    case '/api/pull':
    case '/api/push':
      return [
        ['model', m],
        ['stream', lit(false)],
      ];
    case '/api/create':
      return [
        ['model', m],
        ['from', str('llama3.2')],
        ['stream', lit(false)],
      ];
    case '/api/copy':
      return [
        ['source', m],
        ['destination', str('fuzz-copy:latest')],
      ];
    case '/api/delete':
      return [['model', m]];
    default:
      return [['model', m]];
  }
}

type Op =
  | { k: 'replace'; i: number; v: Json }
  | { k: 'variant'; i: number; mask: number; v: Json }
  | { k: 'dup'; i: number; v: Json }
  | { k: 'remove'; i: number }
  | { k: 'add'; key: string; v: Json }
  | { k: 'wrap'; i: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('replace' as const), i: fc.nat(), v: weird }),
  fc.record({
    k: fc.constant('variant' as const),
    i: fc.nat(),
    mask: fc.nat(),
    v: fc.oneof(weird, modelName.map(str)),
  }),
  fc.record({ k: fc.constant('dup' as const), i: fc.nat(), v: fc.oneof(weird, modelName.map(str)) }),
  fc.record({ k: fc.constant('remove' as const), i: fc.nat() }),
  fc.record({
    k: fc.constant('add' as const),
    key: fc.constantFrom(
      '__proto__',
      'constructor',
      'keep_alive',
      'KEEP_ALIVE',
      'Keep_Alive',
      'name',
      'NAME',
      'ſtream',
      'stream',
      'format',
      'tools',
      'images',
      'suffix',
      'options',
      'prompt',
      'messages',
      'system',
      'raw',
      'context',
      'think',
      'truncate',
    ),
    v: fc.oneof(weird, fc.constantFrom(num(0), str('0'), str('5m'), num(-1), str('-1s'))),
  }),
  fc.record({ k: fc.constant('wrap' as const), i: fc.nat() }),
);

function caseVariant(key: string, mask: number): string {
  let out = '';
  for (let i = 0; i < key.length; i++) out += (mask >> i) & 1 ? key[i].toUpperCase() : key[i];
  if (out === key) out = key.toUpperCase();
  // Go folds ſ (U+017F) to s and K (U+212A) to k when it matches keys.
  return mask % 7 === 0 ? out.replace(/s/i, 'ſ').replace(/k/i, 'K') : out;
}

function apply(entries: [string, Json][], ops: Op[]): [string, Json][] {
  const e = entries.slice();
  for (const o of ops) {
    const n = e.length;
    switch (o.k) {
      case 'replace':
        if (n) e[o.i % n] = [e[o.i % n][0], o.v];
        break;
      case 'variant':
        if (n) e.push([caseVariant(e[o.i % n][0], o.mask), o.v]);
        break;
      case 'dup':
        if (n) e.push([e[o.i % n][0], o.v]);
        break;
      case 'remove':
        if (n) e.splice(o.i % n, 1);
        break;
      case 'add':
        e.push([o.key, o.v]);
        break;
      case 'wrap':
        if (n) e[o.i % n] = [e[o.i % n][0], arr([e[o.i % n][1]])];
        break;
    }
  }
  return e;
}

interface RouteSpec {
  method: string;
  path: string;
  json: boolean;
}

const MODEL_ROUTES = [
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/api/show',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
];
const MANAGEMENT: RouteSpec[] = [
  { method: 'POST', path: '/api/pull', json: true },
  { method: 'POST', path: '/api/push', json: true },
  { method: 'POST', path: '/api/create', json: true },
  { method: 'POST', path: '/api/copy', json: true },
  { method: 'DELETE', path: '/api/delete', json: true },
];
const READS = [
  '/',
  '/api/version',
  '/api/tags',
  '/api/ps',
  '/v1/models',
  '/v1/models/llama3.2',
  '/v1/models/%E0%A4%A',
  '/v1/models/a%2Fb',
  '/health/live',
  '/health/ready',
  '/metrics',
  '/balancer/status',
  '/balancer/dashboard/data',
];

const oddPath = fc.oneof(
  fc.constantFrom(
    '//api/chat',
    '/api//chat',
    '/api/chat/',
    '/api/./chat',
    '/api/../api/chat',
    '/%61pi/chat',
    '/api/chat%00',
    '/api/chat?x=%zz',
    '/api/chat#frag',
    '/API/CHAT',
    '/v1/../api/tags',
    '/v1',
    '/api',
    '/api/blobs/',
    '/api/blobs/sha256:zz',
    '/api/blobs/..%2f..%2fetc%2fpasswd',
    '/balancer/admin/backends/b1/cordon',
    '/balancer/events/../status',
    '*',
    'http://evil.example/api/tags',
    '/\u00e9',
    '/api/tags?backends=b1,b9',
    '/api/pull?backends=nope',
  ),
  fc.integer({ min: 1, max: 9000 }).map((n) => '/api/' + 'a'.repeat(n)),
  fc.string({ maxLength: 40 }).map((s) => '/api/' + encodeURIComponent(s)),
  fc.string({ unit: 'binary-ascii', maxLength: 30 }).map((s) => '/' + s.replace(/[\r\n ]/g, '')),
);

const oddHeader: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.tuple(
    fc.constantFrom('X-Session-Id', 'x-session-id', 'X-Conversation-Id'),
    fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', ' ', 'x'.repeat(5000), '\u00ff\u00fe')),
  ),
  fc.tuple(
    fc.constant('X-Balancer-Backends'),
    fc.constantFrom(
      'b1',
      'b2',
      'b1,b2',
      'all',
      '',
      ',,',
      'b9',
      'B1',
      ' b1 ',
      'b1,b1',
      '__proto__',
      'constructor',
      'http://evil.example',
    ),
  ),
  fc.tuple(
    fc.constant('X-Request-Id'),
    fc.constantFrom('', 'a'.repeat(200), 'abc\u00ff', '../x', 'id with space', 'ok-id-1'),
  ),
  fc.tuple(
    fc.constant('Connection'),
    fc.constantFrom('close', 'keep-alive', 'x-api-key, content-length', 'authorization', 'upgrade', 'host'),
  ),
  fc.tuple(fc.constant('Origin'), fc.constantFrom('http://localhost:5173', 'https://evil.example', 'null', 'app://x')),
  fc.tuple(
    fc.constantFrom('Content-Type'),
    fc.constantFrom('text/plain', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', ''),
  ),
  fc.tuple(fc.constantFrom('Expect'), fc.constantFrom('100-continue', 'nonsense')),
  fc.tuple(
    fc.constantFrom('Accept-Encoding', 'Upgrade', 'TE', 'Proxy-Authorization', 'Forwarded', 'X-Forwarded-For', 'Host'),
    fc.string({ maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, '')),
  ),
);

const auth: fc.Arbitrary<[string, string][]> = fc.oneof(
  { weight: 6, arbitrary: fc.constant([['Authorization', `Bearer ${FUZZ_KEY}`]] as [string, string][]) },
  { weight: 2, arbitrary: fc.constant([['X-API-Key', FUZZ_LIMITED_KEY]] as [string, string][]) },
  { weight: 1, arbitrary: fc.constant([['Authorization', `Bearer ${FUZZ_ADMIN}`]] as [string, string][]) },
  { weight: 1, arbitrary: fc.constant([] as [string, string][]) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<[string, string][]>(
      [['Authorization', 'Bearer ']],
      [['Authorization', 'Basic Zm9vOmJhcg==']],
      [['Authorization', `bearer   ${FUZZ_KEY}  `]],
      [['X-API-Key', ' ']],
      [
        ['Authorization', `Bearer ${FUZZ_KEY}`],
        ['Authorization', 'Bearer other'],
      ],
    ),
  },
);

/** A request body: a bent template, a non-object, garbage bytes, a huge one, or nothing. */
function bodyFor(path: string): fc.Arbitrary<Buffer> {
  return fc.oneof(
    {
      weight: 14,
      arbitrary: fc
        .tuple(modelName, fc.array(op, { maxLength: 4 }))
        .map(([m, ops]) => toBytes(obj(apply(template(path, m), ops)))),
    },
    { weight: 2, arbitrary: weird.map(toBytes) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(
          '',
          '{',
          '{"model":',
          'null',
          '[]',
          '"llama3.2"',
          '{"model":"llama3.2"}{"model":"x"}',
          '\ufeff{"model":"llama3.2"}',
        )
        .map((s) => Buffer.from(s)),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 100_000, max: 1_300_000 }).map((n) =>
        toBytes(
          obj([
            ['model', str('llama3.2')],
            ['prompt', raw(`"${'a'.repeat(n)}"`)],
            ['stream', lit(false)],
          ]),
        ),
      ),
    },
  );
}

const request: fc.Arbitrary<WireRequest> = fc
  .tuple(
    fc.oneof(
      { weight: 10, arbitrary: fc.constantFrom(...MODEL_ROUTES).map((p) => ({ method: 'POST', path: p, json: true })) },
      { weight: 3, arbitrary: fc.constantFrom(...MANAGEMENT) },
      { weight: 3, arbitrary: fc.constantFrom(...READS).map((p) => ({ method: 'GET', path: p, json: false })) },
      {
        weight: 1,
        arbitrary: fc.constantFrom(...READS, ...MODEL_ROUTES).map((p) => ({ method: 'HEAD', path: p, json: false })),
      },
      {
        weight: 1,
        arbitrary: fc
          .constantFrom('/api/chat', '/api/tags', '/v1/chat/completions')
          .map((p) => ({ method: 'OPTIONS', path: p, json: false })),
      },
      {
        weight: 1,
        arbitrary: fc.uint8Array({ minLength: 0, maxLength: 3000 }).map((a) => ({
          method: 'POST',
          path: `/api/blobs/sha256:${createHash('sha256').update(a).digest('hex')}`,
          json: false,
          blob: Buffer.from(a),
        })),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(
            fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'CONNECT', 'PROPFIND', 'get', 'FOO'),
            oddPath,
          )
          .map(([method, path]) => ({ method, path, json: method !== 'GET' })),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(
            fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH'),
            fc.constantFrom(...MODEL_ROUTES, '/api/pull', '/api/delete', '/api/tags'),
          )
          .map(([method, path]) => ({ method, path, json: true })),
      },
    ),
    auth,
    fc.array(oddHeader, { maxLength: 3 }),
    fc.oneof(
      { weight: 40, arbitrary: fc.constant(0 as number | undefined) },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.integer({ min: -5, max: 5 }) },
    ),
    fc.oneof({ weight: 20, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    fc.nat(),
  )
  .chain(([route, creds, extra, lengthDelta, chunked]) => {
    const r = route as RouteSpec & { blob?: Buffer };
    const body: fc.Arbitrary<Buffer> = r.blob
      ? fc.constant(r.blob)
      : r.json
        ? bodyFor(r.path)
        : fc.constant(Buffer.alloc(0));
    return body.map((b): WireRequest => {
      const headers: [string, string][] = [['Host', 'balancer.test'], ...creds];
      if (r.json) headers.push(['Content-Type', 'application/json']);
      if (r.method === 'OPTIONS')
        headers.push(['Origin', 'http://localhost:3000'], ['Access-Control-Request-Method', 'POST']);
      headers.push(...extra);
      const sendsBody = b.length > 0 || r.json;
      return {
        method: r.method,
        target: r.path,
        headers,
        body: b,
        lengthDelta: sendsBody && !chunked ? lengthDelta : undefined,
        chunked: sendsBody && chunked,
      };
    });
  });

const plan: fc.Arbitrary<WirePlan> = fc.oneof(
  { weight: 30, arbitrary: request.map((r) => ({ requests: [r] })) },
  { weight: 3, arbitrary: fc.array(request, { minLength: 2, maxLength: 3 }).map((requests) => ({ requests })) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(request, fc.integer({ min: 0, max: 60 }))
      .map(([r, abortAfterMs]) => ({ requests: [r], abortAfterMs })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(request, fc.integer({ min: 2, max: 5 }), fc.integer({ min: 20, max: 250 }))
      .map(([r, pieces, gapMs]) => ({ requests: [r], pieces, gapMs })),
  },
);

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .array(plan, { minLength: 1, maxLength: 4 })
  .map((plans) => ({ plans }));

/** For reports: what a case sent, short. */
export function describeCase(c: FuzzCase): string {
  return c.plans
    .map(
      (p) =>
        p.requests
          .map((r) => {
            const body =
              r.body.length > 400
                ? `${r.body.subarray(0, 400).toString('latin1')}… (${r.body.length} bytes)`
                : r.body.toString('latin1');
            return `${r.method} ${r.target} ${JSON.stringify(r.headers)}${r.lengthDelta ? ` CL${r.lengthDelta > 0 ? '+' : ''}${r.lengthDelta}` : ''}${r.chunked ? ' chunked' : ''} ${body}`;
          })
          .join(' | pipelined | ') +
        (p.abortAfterMs !== undefined ? ` [abort after ${p.abortAfterMs} ms]` : '') +
        (p.pieces ? ` [${p.pieces} pieces ${p.gapMs} ms apart]` : ''),
    )
    .join('\n');
}

export { fromValue };
