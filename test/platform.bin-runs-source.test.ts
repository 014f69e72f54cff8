import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

// The real bin, in a miniature package whose src/ and dist/ CLIs only say which one ran: a stale dist/ in a
// checkout must never run in place of the source under test (the spawned-CLI tests rely on it).
const ROOT = new URL('..', import.meta.url).pathname;
let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'eo-bin-'));
  mkdirSync(path.join(dir, 'bin'));
  cpSync(path.join(ROOT, 'bin/exactly-once.js'), path.join(dir, 'bin/exactly-once.js'));
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  mkdirSync(path.join(dir, 'src/cli'), { recursive: true });
  // TypeScript syntax, so only tsx can run it.
  writeFileSync(path.join(dir, 'src/cli/main.ts'), "const ran: string = 'ran src';\nconsole.log(ran);\n");
  mkdirSync(path.join(dir, 'dist/src/cli'), { recursive: true });
  writeFileSync(path.join(dir, 'dist/src/cli/main.js'), "console.log('ran dist');\n");
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function runBin() {
  const r = spawnSync(process.execPath, [path.join(dir, 'bin/exactly-once.js')], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

test('in a checkout with a stale dist/, the bin runs src/ through tsx', () => {
  assert.deepEqual(runBin(), { status: 0, stdout: 'ran src', stderr: '' });
});

test('without tsx installed it runs dist/ and says so on stderr', () => {
  rmSync(path.join(dir, 'node_modules'));
  try {
    const r = runBin();
    assert.equal(r.stdout, 'ran dist');
    assert.match(r.stderr, /tsx is not installed, so this runs dist\//);
  } finally {
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  }
});

test('an installed package (no src/) runs dist/, and the package ships no src/', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  assert.ok(!pkg.files.some((f) => f === 'src' || f.startsWith('src/')), `files: ${pkg.files}`);
  rmSync(path.join(dir, 'src'), { recursive: true });
  assert.deepEqual(runBin(), { status: 0, stdout: 'ran dist', stderr: '' });
});

test('with neither, it fails with one line saying what to do', () => {
  rmSync(path.join(dir, 'dist'), { recursive: true });
  const r = runBin();
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'exactly-once: neither dist/ (npm run build) nor src/ with tsx (npm ci) is present');
});
