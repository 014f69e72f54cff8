// Preloaded into every test process (package.json's test scripts: `--import ./test/setup/blocking-stdout.mjs`).
//
// Under `--test-force-exit` each test file's process exits as soon as its last test ends, while the verdicts it has
// streamed to the runner over its stdout, a pipe, may still sit in Node's write queue: they are dropped, and the
// runner reports fewer tests than ran, with exit code 0 (nodejs/node#64833, open; seen here: test/config.test.ts
// reported 25 or 27 of its 59 tests in some runs). A blocking pipe makes every write complete before it returns, so
// nothing is left to drop. The relay and worker processes the tests spawn do not load this file.
const handle = /** @type {{ setBlocking?: (blocking: boolean) => number } | undefined} */ (
  /** @type {any} */ (process.stdout)._handle
);
if (!process.stdout.isTTY && typeof handle?.setBlocking === 'function') handle.setBlocking(true);
