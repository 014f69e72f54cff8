// docs/api/ is the TypeScript API reference, generated from the TSDoc of every public export by `npm run docs:api`
// (TypeDoc, typedoc.json) and committed so that it ships in the package and reads on any Markdown viewer. This test
// generates it again into a temp directory and fails when the committed copy differs: an export added, removed or
// re-documented without `npm run docs:api`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COMMITTED = path.join(ROOT, 'docs', 'api');

/** Every file under `dir`, as paths relative to it. */
function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

test('docs/api is what `npm run docs:api` generates from the current TSDoc', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'eo-api-docs-'));
  try {
    await exec(process.execPath, [path.join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--out', out], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
    const fresh = files(out);
    assert.deepEqual(files(COMMITTED), fresh, 'the same files: run `npm run docs:api`');
    const stale = fresh.filter(
      (f) => readFileSync(path.join(out, f), 'utf8') !== readFileSync(path.join(COMMITTED, f), 'utf8'),
    );
    assert.deepEqual(stale, [], 'these pages differ from the TSDoc: run `npm run docs:api` and commit docs/api');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
