import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { assertOneLineError, runCli } from './helpers/cli-process.js';

// `exactly-once worker` refuses what it cannot run with one line on stderr, no stack trace: exit 2 for bad flags,
// exit 1 (EO_WORKER_HANDLER) for a module that does not load or exports no handler. Nothing here reaches a service.

const dir = mkdtempSync(path.join(tmpdir(), 'eo-worker-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('bad flags: exit 2, one line', async () => {
  assertOneLineError(await runCli(['worker'], {}), 2, /--module FILE is required/);
  assertOneLineError(await runCli(['worker', '-m', 'h.mjs', '--queue', 'q', '--stream', 's'], {}), 2, /not both/);
  assertOneLineError(await runCli(['worker', '-m', 'h.mjs', '--group', 'g'], {}), 2, /--group needs --stream/);
  assertOneLineError(await runCli(['worker', '-m', 'h.mjs', '--concurrency', '0'], {}), 2, /--concurrency must be/);
});

test('a module that does not load, or has no handler: exit 1, EO_WORKER_HANDLER', async () => {
  const missing = path.join(dir, 'missing.mjs');
  assertOneLineError(
    await runCli(['worker', '--module', missing], {}),
    1,
    /cannot load the module/,
    /EO_WORKER_HANDLER/,
  );
  const empty = path.join(dir, 'empty.mjs');
  writeFileSync(empty, 'export const nothing = 1;\n');
  assertOneLineError(
    await runCli(['worker', '--module', empty], {}),
    1,
    /default export must be a function/,
    /EO_WORKER_HANDLER/,
  );
});
