// The dashboard's Workers screen in a real Chromium (Debian's, driven by playwright-core) against a relay process's
// admin server: live workers' heartbeats (a Node worker running in this process, a go-redis-work-queue worker's
// heartbeat), a dead worker's processing list waiting for the reaper, and the dead-letter list, whose job is
// replayed from the page (token asked for, confirmed) and then processed. Error texts render as text.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { createWorker } from '../src/entries/worker.js';
import type { Worker } from '../src/worker/worker.js';
import { launchChromium, screenshot, type WatchedPage, watchedPage } from './helpers/browser.js';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { waitFor } from './helpers/services.js';
import { relayJob, type WorkerEnv, workerEnv } from './helpers/worker-env.js';

const TOKEN = randomBytes(16).toString('hex');
const XSS = '<img src=x onerror="window.__xss = 1">';
const API = '/api/v1/exactly-once';

let env: WorkerEnv;
let relay: HttpRelay;
let browser: Browser;
let worker: Worker;
let tab: WatchedPage | undefined;
const attempts = new Map<string, number>();

before(async () => {
  env = await workerEnv('dash_workers');
  // The reaper waits a minute here, so the dead worker's list stays on the screen.
  const tree = env.tree({ admin: { token: TOKEN }, worker: { reaper_interval: '1m', max_retries: 0 } });
  const launching = launchChromium();
  launching.catch(() => {});
  relay = await startHttpRelay(writeConfigFile('dash-workers', tree), [], {}, 60_000);
  worker = createWorker({
    config: env.config({ worker: { reaper_interval: '1m', max_retries: 0 } }),
    concurrency: 2,
    process: (job) => {
      const n = (attempts.get(job.id) ?? 0) + 1;
      attempts.set(job.id, n);
      if (job.id === 'bad-1' && n === 1) throw new Error(`card declined ${XSS}`);
      return { ok: true };
    },
  });
  await worker.start();
  await env.redis.lpush(env.low, relayJob({ id: 'good-1' }), relayJob({ id: 'bad-1' }));
  await waitFor(async () => (await env.redis.llen(env.deadLetter)) === 1, 20_000, 'bad-1 dead-lettered');
  // A go-redis-work-queue worker's heartbeat (it holds the job it runs), and a dead worker's list.
  await env.redis.set(`${env.keyPrefix}processing:worker:gohost-77-1-beef-0`, relayJob({ id: 'go-job' }), 'PX', 60_000);
  await env.redis.lpush(`${env.keyPrefix}worker:deadhost-5-1-dead:processing`, relayJob({ id: 'orphan' }));
  browser = await launching;
});

after(async () => {
  await tab?.close().catch(() => {});
  await browser?.close();
  await worker?.stop();
  await relay?.stop();
  await env?.close();
});

test("the Workers screen shows live Node and Go workers, a dead worker's list, and the dead-letter list", async () => {
  tab = await watchedPage(browser);
  const { page } = tab;
  await page.goto(`${relay.url}/#/workers`);
  await page.getByRole('heading', { name: '2 worker(s) alive' }).waitFor();
  const rows = page.getByRole('table', { name: 'Workers with a live heartbeat' }).locator('tbody tr');
  const node = rows.filter({ hasText: worker.id });
  assert.match((await node.textContent()) ?? '', /node/);
  assert.match((await node.textContent()) ?? '', new RegExp(env.low.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.match((await rows.filter({ hasText: 'gohost-77-1-beef-0' }).textContent()) ?? '', /go/);
  const orphaned = page.getByRole('table', { name: 'Processing lists without a heartbeat' });
  assert.match((await orphaned.textContent()) ?? '', /deadhost-5-1-dead/);
  await page.getByRole('heading', { name: 'Dead-letter list: 1 job(s)' }).waitFor();
  const dead = page.getByRole('table', { name: 'Dead jobs, newest first' }).locator('tbody tr');
  assert.match((await dead.textContent()) ?? '', /bad-1/);
  assert.ok(await dead.getByText(`card declined ${XSS}`).isVisible(), 'the error, as text');
  assert.equal(await page.evaluate('typeof window.__xss'), 'undefined');
  await screenshot(page, 'workers');
  tab.assertClean();
  await tab.close();
  tab = undefined;
});

test('replaying a dead job from the page needs the token, sends it back, and the worker processes it', async () => {
  const refused = await fetch(`${relay.url}${API}/workers/dead/replay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ all: true }),
  });
  assert.equal(refused.status, 401);
  tab = await watchedPage(browser);
  const { page } = tab;
  await page.goto(`${relay.url}/#/workers`);
  const row = page.getByRole('table', { name: 'Dead jobs, newest first' }).locator('tbody tr', { hasText: 'bad-1' });
  await row.getByRole('button', { name: 'Replay' }).click();
  await page.getByRole('dialog', { name: 'Replay dead jobs?' }).getByRole('button', { name: 'Replay' }).click();
  const tokenDialog = page.getByRole('dialog', { name: 'Admin token' });
  await tokenDialog.waitFor();
  await tokenDialog.getByLabel('Token').fill(TOKEN);
  await tokenDialog.getByRole('button', { name: 'Use token' }).click();
  await page.getByText('Replayed 1 job(s).').waitFor();
  await waitFor(() => attempts.get('bad-1') === 2, 20_000, 'the replayed job run again');
  await waitFor(() => worker.stats().processed === 2, 20_000, 'and processed');
  await page.getByRole('heading', { name: 'Dead-letter list: 0 job(s)' }).waitFor({ timeout: 15_000 });
  assert.equal(await env.redis.llen(env.deadLetter), 0);
  tab.assertClean([/Failed to load resource: the server responded with a status of 401/]);
  await tab.close();
  tab = undefined;
});
