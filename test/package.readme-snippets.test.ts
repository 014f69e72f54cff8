// What a new user gets from `npm install exactly-once`: the packed tarball installed into a fresh app (type: module,
// TypeScript strict with moduleResolution nodenext, the README's peers at the package's own ranges), where
// - every relative link of the installed README, CHANGELOG and docs resolves to a file of the package (or a heading);
// - every TypeScript block of README.md and docs/*.md type-checks, with the prelude its `<!-- snippet -->` comment
//   names (test/snippets/README.md), and the blocks marked `run` / `daemon` run against Postgres and a Redis of this
//   file's own (the blocks use fixed key names: a private server keeps them away from everyone's and goes with it);
// - every `exactly_once:` YAML block loads as a config file with the installed package's loadConfig, and the README's
//   "Public API" table names only what each subpath exports, and every function and class it exports;
// - every subpath's types, and the shipped examples, type-check under moduleResolution nodenext with skipLibCheck off
//   (the declarations import only what the package brings: no @types/pg of the user's), the subpaths resolve under
//   node10 too, and no source map points at a file the package does not ship.
// One app serves every check: it is installed once (npm pack, then npm install from npm's cache).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { codeBlocks, headingAnchors, markdownLinks } from './helpers/markdown.js';
import { installPackedApp, type PackedApp, PKG } from './helpers/packed-app.js';
import { createTestDatabase, type RedisServer, startRedisServer, type TestDatabase } from './helpers/services.js';
import {
  type CheckResult,
  collectSnippets,
  documentedFiles,
  PRELUDE_DIR,
  runSnippet,
  type Snippet,
  tsc,
  typeCheckSnippets,
} from './helpers/snippets.js';

const exec = promisify(execFile);
/** A `run` block must finish within this; a `daemon` block must still be running after DAEMON_ALIVE_MS. */
const RUN_TIMEOUT_MS = 60_000;
const DAEMON_ALIVE_MS = 4000;

let app: PackedApp;
let db: TestDatabase;
let redisServer: RedisServer;
let snippets: Snippet[];
let checked: CheckResult;

before(async () => {
  [app, db, redisServer] = await Promise.all([
    installPackedApp('snippets'),
    createTestDatabase('snippets', { migrate: false }),
    startRedisServer(),
  ]);
  snippets = collectSnippets(documentedFiles());
  // tsc emits even when a block has type errors: the run test below runs what it can either way.
  checked = await typeCheckSnippets(app.dir, snippets, [subpathImports(), publicApiImports(), ...shippedExamples()]);
});

/** The README's "Public API" table: each row's subpath and the identifiers its "exports" cell names. */
function publicApiTable(): { subpath: string; names: string[] }[] {
  const text = readFileSync(path.join(app.packageDir, 'README.md'), 'utf8');
  const rows: { subpath: string; names: string[] }[] = [];
  for (const line of text.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const subpath = /^`(exactly-once(?:\/[\w-]+)?)`$/.exec(cells[1] ?? '')?.[1];
    if (!subpath || cells.length < 4) continue;
    const names = new Set([...(cells[2] ?? '').matchAll(/`([A-Za-z_$][\w$]*)`/g)].map((m) => m[1] as string));
    rows.push({ subpath, names: [...names] });
  }
  return rows;
}

/** `import type { ...names } from '<subpath>'` for every row of the table, as `<app>/types/public-api.ts`. */
function publicApiImports(): string {
  const rows = publicApiTable();
  writeFileSync(
    path.join(app.dir, 'types', 'public-api.ts'),
    // Aliased per row: two subpaths may export one name (generateIdempotencyKey).
    `${rows
      .map((r, i) => `import type { ${r.names.map((n) => `${n} as r${i}_${n}`).join(', ')} } from '${r.subpath}';`)
      .join('\n')}\nexport {};\n`,
  );
  return 'types/public-api.ts';
}

/** A module importing every subpath of the package's `exports`, as `<app>/types/imports.ts`; its path in the app. */
function subpathImports(): string {
  const { exports } = JSON.parse(readFileSync(path.join(app.packageDir, 'package.json'), 'utf8')) as {
    exports: object;
  };
  const subpaths = Object.keys(exports).filter((k) => k !== './package.json');
  mkdirSync(path.join(app.dir, 'types'), { recursive: true });
  writeFileSync(
    path.join(app.dir, 'types', 'imports.ts'),
    subpaths.map((s, i) => `import * as m${i} from '${PKG.name}${s.slice(1)}';\nexport { m${i} };\n`).join(''),
  );
  return 'types/imports.ts';
}

/**
 * The examples the package ships, copied into the app as a user would (they import the package by its name); their
 * paths in the app. (Compiled where they lie, their output would land in a `node_modules/exactly-once` of the output
 * folder and hide the real package from the compiled snippets.)
 */
function shippedExamples(): string[] {
  const from = path.join(app.packageDir, 'examples');
  if (!existsSync(from)) return [];
  mkdirSync(path.join(app.dir, 'examples'), { recursive: true });
  return readdirSync(from).map((f) => {
    copyFileSync(path.join(from, f), path.join(app.dir, 'examples', f));
    return `examples/${f}`;
  });
}

after(async () => {
  app?.close();
  await redisServer?.kill();
  await db?.close();
});

/** The environment a snippet runs with: the test's database and Redis, as a user's DATABASE_URL / REDIS_URL. */
const services = () => ({ DATABASE_URL: db.url, REDIS_URL: redisServer.url });

describe('the installed package', { concurrency: false }, () => {
  test('every relative link of the installed README, CHANGELOG and docs resolves inside the package', () => {
    const problems: string[] = [];
    const docs = readdirSync(path.join(app.packageDir, 'docs')).filter((f) => f.endsWith('.md'));
    for (const file of ['README.md', 'CHANGELOG.md', ...docs.map((f) => `docs/${f}`)]) {
      const from = path.join(app.packageDir, file);
      const text = readFileSync(from, 'utf8');
      for (const { line, target } of markdownLinks(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: ...: absolute
        const [rel = '', anchor] = target.split('#');
        const resolved = rel === '' ? from : path.resolve(path.dirname(from), decodeURI(rel));
        const where = `${file}:${line}: ${target}`;
        if (!resolved.startsWith(app.packageDir + path.sep)) problems.push(`${where} points outside the package`);
        else if (!existsSync(resolved)) problems.push(`${where} is not in the package`);
        else if (anchor && resolved.endsWith('.md') && !headingAnchors(readFileSync(resolved, 'utf8')).has(anchor)) {
          problems.push(`${where}: no such heading`);
        }
      }
    }
    assert.deepEqual(problems, []);
    // What the README points at, in the tarball itself (not only present in this checkout).
    for (const f of ['LICENSE', 'CHANGELOG.md', 'docs/operations.md', 'examples/stream-consumer.ts']) {
      assert.ok(app.files.includes(f), `the tarball ships ${f}`);
    }
  });

  test('every TypeScript block of README.md and docs/*.md, every subpath and the shipped examples type-check (strict, nodenext, skipLibCheck off)', () => {
    assert.ok(snippets.length > 0, 'found the TypeScript blocks');
    assert.ok(existsSync(path.join(app.packageDir, 'examples', 'stream-consumer.ts')), 'the package ships examples/');
    const used = new Set(snippets.map((s) => s.prelude));
    const unused = readdirSync(PRELUDE_DIR).filter((f) => f.endsWith('.ts') && !used.has(f.replace(/\.ts$/, '')));
    assert.deepEqual(unused, [], 'a prelude no block names any more: delete it');
    assert.deepEqual(checked.errors, [], `type errors:\n${checked.errors.join('\n')}`);
  });

  test('the blocks marked run or daemon run against Postgres and Redis', async () => {
    const migrated = await exec(process.execPath, [path.join(app.packageDir, 'bin', 'exactly-once.js'), 'migrate'], {
      cwd: app.dir,
      env: { ...process.env, ...services() },
    });
    assert.match(migrated.stdout, /^applied 0001_outbox/, 'npx exactly-once migrate, as the README says');
    const failures: string[] = [];
    const where = (s: Snippet) => `${s.block.file}:${s.block.line}`;
    for (const s of snippets.filter((x) => x.mode === 'run')) {
      const r = await runSnippet(app.dir, checked.compiled(s), 'run', services(), RUN_TIMEOUT_MS);
      if (r.code !== 0)
        failures.push(`${where(s)} (run): exit ${r.code ?? r.signal}${r.alive ? ' (timed out)' : ''}\n${r.output}`);
    }
    // A worker loop must survive its start, and a restart (a consumer group that exists, a queue created before).
    const daemons = snippets.filter((x) => x.mode === 'daemon');
    for (const round of ['first start', 'restart']) {
      const outcomes = await Promise.all(
        daemons.map((s) => runSnippet(app.dir, checked.compiled(s), 'daemon', services(), DAEMON_ALIVE_MS)),
      );
      outcomes.forEach((r, i) => {
        if (!r.alive)
          failures.push(`${where(daemons[i] as Snippet)} (${round}): exited ${r.code ?? r.signal}\n${r.output}`);
      });
    }
    assert.deepEqual(failures, []);
  });

  test("the README's Public API table names what each subpath exports, and every function and class it exports", async () => {
    const rows = publicApiTable();
    const { exports } = JSON.parse(readFileSync(path.join(app.packageDir, 'package.json'), 'utf8')) as {
      exports: object;
    };
    assert.deepEqual(
      rows.map((r) => r.subpath).sort(),
      Object.keys(exports)
        .filter((k) => k !== './package.json')
        .map((k) => `${PKG.name}${k.slice(1)}`)
        .sort(),
      'a row per subpath of "exports"',
    );
    // Each name the table gives is an export of its row's subpath (type or value): checked by the type-check above.
    assert.deepEqual(
      checked.errors.filter((e) => e.includes('public-api.ts')),
      [],
      'a name the table gives that its subpath does not export',
    );
    // Each runtime export is named, except the error classes (the table says "every error class").
    const script = `const out = {};
      for (const s of JSON.parse(process.argv[1])) out[s] = Object.keys(await import(s));
      console.log(JSON.stringify(out));`;
    const { stdout } = await exec(
      process.execPath,
      ['--input-type=module', '-e', script, JSON.stringify(rows.map((r) => r.subpath))],
      { cwd: app.dir },
    );
    const exported = JSON.parse(stdout) as Record<string, string[]>;
    const unnamed = rows.flatMap((r) =>
      (exported[r.subpath] ?? [])
        .filter((name) => !r.names.includes(name) && !/Error$/.test(name))
        .map((name) => `${r.subpath}: ${name}`),
    );
    assert.deepEqual(unnamed, [], 'exports the table does not name');
  });

  test('every exactly_once YAML block loads as a config file', async () => {
    const dir = path.join(app.dir, 'yaml-blocks');
    mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (const file of documentedFiles()) {
      for (const block of codeBlocks(path.join(app.packageDir, file))) {
        if (block.lang !== 'yaml' || !/^exactly_once:/m.test(block.code)) continue;
        const name = path.join(dir, `${file.replace(/\W+/g, '_')}_${block.line}.yaml`);
        writeFileSync(name, block.code);
        files.push(name);
      }
    }
    assert.ok(files.length > 0, 'found the exactly_once YAML blocks');
    const script = `import { loadConfig } from ${JSON.stringify(PKG.name)};
      const failed = [];
      for (const f of JSON.parse(process.argv[1])) {
        try { loadConfig(f, { env: {} }); } catch (err) { failed.push(f.split('/').pop() + ': ' + err.message); }
      }
      console.log(JSON.stringify(failed));`;
    const { stdout } = await exec(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(files)], {
      cwd: app.dir,
    });
    assert.deepEqual(JSON.parse(stdout), []);
  });

  test('every subpath has types under moduleResolution node10 too, and no source map points at a missing file', async () => {
    // An older setup (moduleResolution node10, which ignores "exports") finds the subpaths' types through typesVersions.
    writeFileSync(
      path.join(app.dir, 'types', 'tsconfig.node10.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'esnext',
          moduleResolution: 'node10',
          esModuleInterop: true,
          strict: true,
          skipLibCheck: true,
          noEmit: true,
          types: ['node'],
        },
        files: ['imports.ts'],
      }),
    );
    assert.deepEqual(await tsc(path.join(app.dir, 'types'), 'tsconfig.node10.json'), []);
    for (const map of app.files.filter((f) => f.endsWith('.map'))) {
      const { sources, sourcesContent } = JSON.parse(readFileSync(path.join(app.packageDir, map), 'utf8')) as {
        sources: string[];
        sourcesContent?: unknown[];
      };
      for (const source of sources) {
        const file = path.resolve(path.dirname(path.join(app.packageDir, map)), source);
        assert.ok(sourcesContent || existsSync(file), `${map} points at ${source}, which the package does not ship`);
      }
    }
  });
});
