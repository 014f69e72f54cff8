import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';

// Issue 14: each subpath of package.json "exports" resolves by the package's name and loads only what it needs; the
// main entry, which every producer imports, loads no HTTP server, metrics registry, Redis client, logger or scheduler.
// The package is laid out as `npm pack` ships it (dist/src, package.json with its exports) in a temp directory, with
// src/ transpiled file by file (tsc's full build takes a minute; its output differs only in types and source maps,
// and `npm run build` is checked by CI), and imported by name from fresh node processes that record every module
// they load: ES modules through a resolve hook, CommonJS ones (pg, ioredis, fastify, ...) from require.cache.

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PKG = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, string | { types: string; default: string }>;
};
/** Packages a producer must not pay for. */
const HEAVY = ['fastify', 'prom-client', 'pg-boss', 'ioredis', 'pino'];

let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'eo-exports-'));
  transpileTree(path.join(ROOT, 'src'), path.join(dir, 'dist', 'src'));
  cpSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  writeFileSync(
    path.join(dir, 'trace-hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.EO_TRACE, r.url + '\\n');
  return r;
}
`,
  );
  writeFileSync(
    path.join(dir, 'trace.mjs'),
    `import { register } from 'node:module';\nregister('./trace-hooks.mjs', import.meta.url);\n`,
  );
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function transpileTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isDirectory()) transpileTree(source, path.join(to, entry.name));
    else if (entry.name.endsWith('.lua')) cpSync(source, path.join(to, entry.name));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      const { outputText } = ts.transpileModule(readFileSync(source, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        fileName: source,
      });
      writeFileSync(path.join(to, entry.name.replace(/\.ts$/, '.js')), outputText);
    }
  }
}

interface Loaded {
  exports: string[];
  packages: string[];
}

/** Import `specifier` by the package's name in a fresh process; its export names and every package it loaded. */
async function importInChild(specifier: string): Promise<Loaded> {
  const trace = path.join(dir, `trace-${specifier.replace(/\W/g, '_')}.txt`);
  writeFileSync(trace, '');
  const script = `
    import { createRequire } from 'node:module';
    const m = await import(${JSON.stringify(specifier)});
    const cjs = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ exports: Object.keys(m), cjs }));`;
  const { stdout } = await exec(process.execPath, ['--import', './trace.mjs', '--input-type=module', '-e', script], {
    cwd: dir,
    env: { ...process.env, EO_TRACE: trace },
  });
  const out = JSON.parse(stdout) as { exports: string[]; cjs: string[] };
  const files = [...readFileSync(trace, 'utf8').split('\n'), ...out.cjs];
  const packages = new Set<string>();
  for (const f of files) {
    const m = /.*node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f);
    if (m?.[1]) packages.add(m[1]);
  }
  return { exports: out.exports.sort(), packages: [...packages].sort() };
}

test('every "exports" entry points at an entry file and its types', () => {
  const subpaths = Object.keys(PKG.exports).filter((k) => k !== './package.json');
  assert.deepEqual(subpaths, [
    '.',
    './relay',
    './idempotency',
    './manager',
    './admin',
    './metrics',
    './maintenance',
    './worker',
  ]);
  for (const key of subpaths) {
    const target = PKG.exports[key] as { types: string; default: string };
    assert.match(target.default, /^\.\/dist\/src\/.+\.js$/, key);
    assert.equal(target.types, target.default.replace(/\.js$/, '.d.ts'), `${key}: types beside the code`);
    assert.ok(existsSync(path.join(dir, target.default)), `${key}: ${target.default} is built`);
    const source = path.join(ROOT, target.default.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'));
    assert.ok(existsSync(source), `${key}: ${source} exists`);
  }
});

test('the main entry exports the producer API and loads none of fastify, prom-client, pg-boss, ioredis, pino', async () => {
  const main = await importInChild(PKG.name);
  for (const name of ['storeInOutbox', 'storeInOutboxStandalone', 'loadConfig', 'generateIdempotencyKey']) {
    assert.ok(main.exports.includes(name), `exports ${name}`);
  }
  assert.ok(main.exports.includes('ExactlyOnceError') && main.exports.includes('OutboxEventValidationError'));
  // Not public API any more (issue 14): config chooses the stores; storeInOutbox takes a transaction as it is.
  for (const name of ['DatabaseStore', 'HotCacheStore', 'fromKysely', 'fromPg', 'backoffDelay', 'Manager', 'Relay']) {
    assert.ok(!main.exports.includes(name), `does not export ${name}`);
  }
  const heavy = main.packages.filter((p) => HEAVY.includes(p));
  assert.deepEqual(heavy, [], `the main entry loaded ${heavy.join(', ')} (all: ${main.packages.join(', ')})`);
  assert.ok(main.packages.includes('kysely'), 'the trace sees what was loaded');
});

test('each subpath resolves by name, exports its API, and loads what it needs only', async () => {
  const expected: Record<string, { has: string[]; loads: string[]; never: string[] }> = {
    relay: {
      has: ['Relay', 'createPublisher', 'createRedisClient'],
      loads: ['ioredis'],
      never: ['fastify', 'prom-client'],
    },
    idempotency: { has: ['IdempotencyService', 'generateIdempotencyKey'], loads: ['ioredis'], never: ['fastify'] },
    manager: { has: ['Manager', 'createLogger'], loads: ['ioredis', 'pino'], never: ['fastify', 'prom-client'] },
    admin: { has: ['exactlyOnceAdmin', 'startAdminServer', 'startOperations'], loads: ['fastify'], never: [] },
    metrics: { has: ['Metrics'], loads: ['prom-client'], never: ['fastify', 'ioredis'] },
    maintenance: {
      has: ['runCleanup', 'startMaintenance', 'listOutboxEvents', 'retryOutboxEvents'],
      loads: [],
      never: ['fastify', 'prom-client', 'ioredis'],
    },
    worker: { has: ['createWorker'], loads: ['ioredis', 'pg', 'pino'], never: ['fastify', 'prom-client', 'pg-boss'] },
  };
  const results = await Promise.all(
    Object.keys(expected).map(async (sub) => [sub, await importInChild(`${PKG.name}/${sub}`)] as const),
  );
  for (const [sub, loaded] of results) {
    const want = expected[sub] as (typeof expected)[string];
    for (const name of want.has) assert.ok(loaded.exports.includes(name), `${sub} exports ${name}`);
    for (const p of want.loads) assert.ok(loaded.packages.includes(p), `${sub} loads ${p}: ${loaded.packages}`);
    for (const p of want.never) assert.ok(!loaded.packages.includes(p), `${sub} loads ${p}: ${loaded.packages}`);
  }
});
