// The system tools some tests drive, made present before the tests run, so a missing tool is neither a skipped test
// nor a surprise failure deep in the run: Debian's Chromium (test/dashboard.browser.test.ts, through playwright-core,
// no browser download), promtool from Debian's prometheus (test/metrics.prometheus.test.ts) and Compose
// (test/platform.compose-stack.test.ts validates docker-compose.yml without a Docker engine).
//
// When one is missing and this runs as root on a machine with apt-get, it installs the Debian packages (the README's
// `npm ci && npm test` then passes on a fresh machine); otherwise it prints the one command to run and exits 1.
// EO_NO_INSTALL=1 turns the install off.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const has = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

const missing = [];
if (!existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium')) missing.push('chromium');
if (!has('promtool', ['--version'])) missing.push('prometheus');
if (!has('docker-compose', ['version']) && !has('docker', ['compose', 'version'])) missing.push('docker-compose');

if (missing.length > 0) {
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  const canInstall = process.getuid?.() === 0 && has('apt-get', ['--version']) && process.env.EO_NO_INSTALL !== '1';
  if (!canInstall) {
    console.error(`test-tools: the tests need ${missing.join(', ')}; install with: ${command}`);
    process.exit(1);
  }
  console.error(`test-tools: installing ${missing.join(', ')} (Debian packages; EO_NO_INSTALL=1 turns this off)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (args) => spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 600_000 });
  const update = run(['update', '-qq']);
  const install = run(['install', '-y', '-qq', '--no-install-recommends', ...missing]);
  if (update.status !== 0 || install.status !== 0) {
    console.error(`test-tools: installing failed; run: apt-get update && ${command}`);
    process.exit(1);
  }
}
