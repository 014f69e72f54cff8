// The operator dashboard in a real Chromium (Debian's, driven by playwright-core) against real relay processes over
// real Postgres and Redis: every screen loads, filters and detail work, replay publishes, a key is deleted, writes
// without the token are refused, payloads render as text, read-only mode shows no actions, and nothing logs an error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { configFromObject } from '../src/config/load-config.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { launchChromium, screenshot, type WatchedPage, watchedPage } from './helpers/browser.js';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

const API = '/api/v1/exactly-once';
const TOKEN = randomBytes(16).toString('hex');
const XSS_SCRIPT = '<script>window.__xss = 1</script>';
const XSS_IMG = '"><img src=x onerror="window.__xss = 2">';
/** The browser logs each refused request; the tests that make one on purpose allow exactly that line. */
const REFUSED = /Failed to load resource: the server responded with a status of 401/;

let db: TestDatabase;
let redis: Redis;
let prefix: string;
let relay: HttpRelay;
let readOnlyRelay: HttpRelay;
let browser: Browser;
const dead: Record<string, string> = {};
let tab: WatchedPage | undefined;

async function api(base: string, method: string, path: string, options: { body?: unknown; token?: string } = {}) {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${API}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
}

async function open(base: string, hash: string, viewport?: { width: number; height: number }): Promise<Page> {
  tab = await watchedPage(browser, viewport);
  await tab.page.goto(`${base}/${hash}`);
  return tab.page;
}

/** The page's token form, filled in the way a user would. */
async function enterToken(page: Page, token: string) {
  const dialog = page.getByRole('dialog', { name: 'Admin token' });
  await dialog.waitFor();
  await dialog.getByLabel('Token').fill(token);
  await dialog.getByRole('button', { name: 'Use token' }).click();
}

async function confirm(page: Page, button: string) {
  const dialog = page.getByRole('dialog', { name: /\?$/ });
  await dialog.waitFor();
  await dialog.getByRole('button', { name: button }).click();
}

async function statusOf(id: string): Promise<string | undefined> {
  const { rows } = await db.pool.query<{ status: string }>('SELECT status FROM exactly_once_outbox WHERE id = $1', [
    id,
  ]);
  return rows[0]?.status;
}

before(async () => {
  db = await createTestDatabase('dashboard');
  prefix = redisPrefix('dashboard');
  redis = new Redis(REDIS_URL);
  const tree = {
    database: { url: db.url },
    redis: { url: REDIS_URL },
    idempotency: { key_prefix: prefix },
    outbox: {
      queue_pattern: `${prefix}jobqueue:{priority}_priority`,
      allowed_queues: [`${prefix}*`],
      // A retrying event stays "retrying" for the whole file: it is the held aggregate's blocking event.
      retry_backoff: { initial_delay: '1h', max_delay: '1h', jitter: false },
    },
    admin: { token: TOKEN },
  };
  const config = configFromObject(tree);
  const broken = `${prefix}broken`;
  // A string where a list is expected: LPUSH answers WRONGTYPE, a failure of that event alone.
  await redis.set(broken, 'not a list');
  // The relay is up before the events are written: its overview counts retries and deaths from the moment it starts.
  const file = writeConfigFile('dashboard', tree);
  const launching = launchChromium();
  launching.catch(() => {}); // awaited below; a failure there fails the hook, not the process
  relay = await startHttpRelay(file, [], {}, 60_000);
  const orders = Array.from({ length: 12 }, (_, i) => ({
    aggregateType: 'order',
    aggregateId: `o-${i + 1}`,
    eventType: 'order.created',
    tenantId: i % 2 ? 'acme' : 'globex',
    payload: { orderId: `o-${i + 1}`, total: (i + 1) * 10 },
  }));
  const stored = await storeInOutboxStandalone(
    db.pool,
    [
      ...orders,
      { aggregateType: 'order', aggregateId: 'o-3', eventType: 'order.paid', payload: { orderId: 'o-3', paid: true } },
      {
        aggregateType: 'probe',
        aggregateId: XSS_IMG,
        eventType: 'xss.probe',
        payload: { note: XSS_SCRIPT, html: XSS_IMG },
        headers: { 'x-note': XSS_SCRIPT },
      },
      ...['d-1', 'd-2', 'd-3'].map((id) => ({
        aggregateType: 'invoice',
        aggregateId: id,
        eventType: 'invoice.sent',
        payload: { invoice: id },
        queue: broken,
        maxRetries: 0,
      })),
      { aggregateType: 'cart', aggregateId: 'held-1', eventType: 'cart.opened', payload: {}, queue: broken },
      { aggregateType: 'cart', aggregateId: 'held-1', eventType: 'cart.closed', payload: {} },
    ],
    config.outbox,
  );
  for (const e of stored) if (e.aggregateId.startsWith('d-')) dead[e.aggregateId] = e.id;

  // 13 published, 3 dead, the held aggregate's first event retrying: the state every screen below shows.
  await waitFor(
    async () => {
      const { rows } = await db.pool.query<{ published: number; failed: number; retrying: number }>(
        `SELECT count(*) FILTER (WHERE status = 'published')::int AS published,
                count(*) FILTER (WHERE status = 'failed')::int AS failed,
                count(*) FILTER (WHERE status = 'pending' AND retry_count > 0)::int AS retrying
           FROM exactly_once_outbox`,
      );
      const r = rows[0];
      return r?.published === 14 && r.failed === 3 && r.retrying === 1;
    },
    20_000,
    'the relay to publish, fail and retry the seeded events',
  );
  // Started once the work is done, so every publish, retry and failure was counted by the first relay's overview.
  [readOnlyRelay, browser] = await Promise.all([
    startHttpRelay(file, [], { ADMIN_READ_ONLY: 'true' }, 60_000),
    launching,
  ]);
  await api(relay.url, 'POST', '/idempotency', {
    token: TOKEN,
    body: { queue_name: 'emails', tenant_id: 'acme', key_id: 'welcome-42', value: { sent: true }, ttl: '1h' },
  });
});

after(async () => {
  await tab?.close().catch(() => {});
  await browser?.close();
  await Promise.all([relay?.stop(), readOnlyRelay?.stop()]);
  if (redis) {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
  }
  await db?.close();
});

describe('operator dashboard in Chromium', { concurrency: false }, () => {
  // Each test opens its own tab (fresh sessionStorage: no token) and must leave it without errors.
  const done = async (allowed: RegExp[] = []) => {
    const t = tab;
    tab = undefined;
    try {
      t?.assertClean(allowed);
    } finally {
      await t?.close();
    }
  };

  test('the page and its assets carry the security headers, and the page loads no remote resource', async () => {
    for (const path of ['/', '/ui/app.js', '/ui/style.css', '/ui/vendor/uplot.js']) {
      const res = await fetch(`${relay.url}${path}`);
      assert.equal(res.status, 200, path);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /script-src 'self'/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.equal(res.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
      await res.arrayBuffer();
    }
    assert.equal((await fetch(`${relay.url}/ui/../package.json`)).status, 404);
    const page = await open(relay.url, '#/overview');
    const remote: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(relay.url) && !r.url().startsWith('data:')) remote.push(r.url());
    });
    await page.reload();
    await page.locator('.uplot canvas').first().waitFor();
    assert.deepEqual(remote, []);
    await done();
  });

  test('events: filter by status, type and aggregate, page with next/previous, open one in the detail panel', async () => {
    const page = await open(relay.url, '#/events');
    const rows = page.locator('#event-results tbody tr');
    await rows.first().waitFor();
    await page.getByLabel('Event type').fill('order.created');
    await page.getByLabel('Per page').selectOption('10');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('10 shown').waitFor();
    assert.equal(await rows.count(), 10);
    await page.getByRole('button', { name: 'Next page →' }).click();
    await page.getByText('2 shown').waitFor();
    assert.equal(await rows.count(), 2);
    await page.getByRole('button', { name: '← Previous page' }).click();
    await page.getByText('10 shown').waitFor();

    await page.getByLabel('Event type').fill('');
    await page.getByLabel('Status').selectOption('published');
    await page.getByLabel('Aggregate id').fill('o-3');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('2 shown').waitFor();
    assert.match(page.url(), /aggregate_id=o-3/);
    await rows.filter({ hasText: 'order.paid' }).click();
    const detail = page.getByRole('complementary', { name: 'Event details' });
    await detail.getByText('"paid": true').waitFor();
    assert.match((await detail.textContent()) ?? '', /"orderId": "o-3"/);
    await screenshot(page, 'events');
    await done();
  });

  test('a payload with <script> and an onerror attribute renders as text and runs nothing', async () => {
    const page = await open(relay.url, '#/events?event_type=xss.probe');
    const row = page.locator('#event-results tbody tr');
    await row.filter({ hasText: XSS_IMG }).waitFor();
    await row.first().click();
    const detail = page.getByRole('complementary', { name: 'Event details' });
    await detail.locator('pre.json').first().waitFor();
    assert.ok(await detail.getByText(XSS_SCRIPT.replaceAll('"', '\\"'), { exact: false }).first().isVisible());
    assert.ok(await detail.getByText(`probe / ${XSS_IMG}`).isVisible());
    assert.equal(await page.evaluate('typeof window.__xss'), 'undefined');
    assert.equal(await page.locator('img').count(), 0, 'no injected element');
    assert.equal(await page.locator('script').count(), 2, 'only the page’s own scripts');
    await done();
  });

  test('held aggregates: the aggregate waits behind its retrying event', async () => {
    const page = await open(relay.url, '#/held');
    const row = page.locator('tbody tr', { hasText: 'held-1' });
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /cart\.opened/);
    assert.match((await row.textContent()) ?? '', /WRONGTYPE/);
    await screenshot(page, 'held');
    await done();
  });

  test('overview: backlog, dead count, rates chart, destinations, relays and health', async () => {
    const page = await open(relay.url, '#/overview');
    const failed = page.locator('[data-stat="failed"] .stat-value');
    await failed.waitFor();
    assert.equal(await failed.textContent(), '3');
    assert.equal(await page.locator('#mode').isVisible(), false, 'no read-only badge');
    assert.equal(
      await page
        .locator('[data-stat="postgres"] .stat-value')
        .textContent()
        .then((t) => t?.startsWith('ok')),
      true,
    );
    assert.equal(
      await page
        .locator('[data-stat="redis"] .stat-value')
        .textContent()
        .then((t) => t?.startsWith('ok')),
      true,
    );
    assert.ok(Number(await page.locator('[data-stat="relays"] .stat-value').textContent()) >= 1, 'relays awake');
    await page.locator('.uplot canvas').first().waitFor();
    await page.getByRole('link', { name: `${prefix}jobqueue:low_priority` }).waitFor();
    // Retries and deaths reach the chart at the relay's next counter sample (every 5 s), and the page shows them at
    // its next refresh by itself.
    await page.locator('#rates-summary', { hasText: /14 published, 1 retried, 3 failed/ }).waitFor({ timeout: 20_000 });
    await screenshot(page, 'overview');
    await done();
  });

  test('read-only mode: no action anywhere, and the server refuses writes', async () => {
    const page = await open(readOnlyRelay.url, '#/dead');
    await page.locator('.group').first().waitFor();
    await page.locator('#mode').waitFor({ state: 'visible' });
    assert.equal(await page.getByRole('button', { name: /Replay/ }).count(), 0);
    assert.equal(await page.getByRole('checkbox').count(), 0);
    await page.goto(`${readOnlyRelay.url}/#/events?status=failed`);
    await page.locator('#event-results tbody tr').first().click();
    await page.getByRole('complementary', { name: 'Event details' }).getByText('Last error').waitFor();
    assert.equal(await page.getByRole('button', { name: /Replay/ }).count(), 0);
    await page.goto(`${readOnlyRelay.url}/#/keys?queue=emails&tenant=acme&key=welcome-42`);
    await page.locator('#key-result').getByText('completed').waitFor();
    assert.equal(await page.getByRole('button', { name: /Delete/ }).count(), 0);
    const refused = await api(readOnlyRelay.url, 'POST', '/outbox/retry', {
      token: TOKEN,
      body: { ids: [dead['d-1']] },
    });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(refused.json.error.code, 'EO_ADMIN_READ_ONLY');
    assert.equal(await statusOf(dead['d-1'] as string), 'failed');
    await done();
  });

  test('dead events: without the token the replay is refused, in the page and at the API; with it, published', async () => {
    await redis.del(`${prefix}broken`); // the destination is fixed: a replay can now succeed
    const page = await open(relay.url, '#/dead');
    const group = page.locator('.group', { hasText: 'WRONGTYPE' });
    await group.locator('tbody tr').nth(2).waitFor();
    await screenshot(page, 'dead');
    const row = (id: string) => group.locator('tbody tr', { hasText: id });

    // Cancelled confirmation: nothing happens.
    await row('d-1').getByRole('button', { name: 'Replay' }).click();
    await confirm(page, 'Cancel');
    // Confirmed, but no token: the server's refusal is shown.
    await row('d-1').getByRole('button', { name: 'Replay' }).click();
    await confirm(page, 'Replay');
    await page.getByRole('dialog', { name: 'Admin token' }).getByRole('button', { name: 'Cancel' }).click();
    const direct = await api(relay.url, 'POST', '/outbox/retry', { body: { ids: [dead['d-1']] } });
    assert.equal(direct.status, 401, direct.text);
    await page.getByRole('alert').getByText(direct.json.error.message).waitFor();
    assert.equal(await statusOf(dead['d-1'] as string), 'failed');

    // With the token: replayed, and the relay publishes it into Redis.
    await row('d-1').getByRole('button', { name: 'Replay' }).click();
    await confirm(page, 'Replay');
    await enterToken(page, TOKEN);
    await page.getByRole('status').getByText('Replayed 1 event(s)').waitFor();
    const pushed = async (id: string) =>
      (await redis.lrange(`${prefix}broken`, 0, -1)).some((job) => JSON.parse(job).id === id);
    await waitFor(() => pushed(dead['d-1'] as string), 10_000, 'the replayed event in Redis');

    // A selection, then the rest of the group.
    await row('d-2').getByRole('checkbox').check();
    await page.getByRole('button', { name: 'Replay selected (1)' }).click();
    await confirm(page, 'Replay');
    await waitFor(() => pushed(dead['d-2'] as string), 10_000, 'the selected event in Redis');
    await page.locator('.group', { hasText: 'WRONGTYPE' }).getByRole('button', { name: 'Replay all 1' }).click();
    await confirm(page, 'Replay');
    await waitFor(() => pushed(dead['d-3'] as string), 10_000, 'the group in Redis');
    await page.getByText('No dead events').waitFor();
    await done([REFUSED]);
  });

  test('idempotency keys: look one up, see state and cache, delete it after confirming', async () => {
    const page = await open(relay.url, '#/keys');
    await page.getByLabel('Queue').fill('emails');
    await page.getByLabel('Tenant (empty for none)').fill('acme');
    await page.getByLabel('Key', { exact: true }).fill('welcome-42');
    await page.getByRole('button', { name: 'Look up' }).click();
    const card = page.locator('#key-result');
    await card.getByText('completed').waitFor();
    assert.match((await card.textContent()) ?? '', /"sent": true/);
    assert.match((await card.textContent()) ?? '', /Cached in Redis(yes|no)/);
    await screenshot(page, 'keys');
    await card.getByRole('button', { name: 'Delete key' }).click();
    await confirm(page, 'Delete key');
    await enterToken(page, TOKEN);
    await card.getByText('was deleted').waitFor();
    const gone = await api(relay.url, 'GET', '/idempotency?queue=emails&tenant=acme&key=welcome-42');
    assert.equal(gone.status, 404, gone.text);
    await done([REFUSED]);
  });

  test('table health: sizes, dead tuples, vacuum times, oldest transaction, pending cleanup', async () => {
    const page = await open(relay.url, '#/tables');
    const tables = page.getByRole('table', { name: 'Table sizes and vacuum state' });
    // The outbox's partitions (the current one holds the events), its parked events and the lanes' cursors.
    await tables.getByRole('cell', { name: 'exactly_once_outbox_events_0', exact: true }).waitFor();
    await tables.getByRole('cell', { name: 'exactly_once_outbox_parked', exact: true }).waitFor();
    await page.locator('[data-stat="cleanup-outbox"]').waitFor();
    assert.ok((await page.locator('tbody tr').count()) >= 3, 'tables and indexes listed');
    await screenshot(page, 'tables');
    await done();
  });

  test('narrow screen and keyboard: nothing overflows the page, the nav works with Enter', async () => {
    const page = await open(relay.url, '#/events', { width: 390, height: 844 });
    await page.locator('#event-results tbody tr').first().waitFor();
    const overflow = Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));
    // Which elements stick out, for the failure message (tables scroll inside their own wrapper, so none should).
    const culprits = await page.evaluate(`[...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && !el.closest('.table-wrap'))
      .slice(0, 5).map((el) => el.tagName + '.' + el.className + '#' + el.id)`);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen: ${JSON.stringify(culprits)}`);
    await page.getByRole('link', { name: 'Held' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Held aggregates' }).waitFor();
    assert.match(page.url(), /#\/held$/);
    await done();
  });
});
