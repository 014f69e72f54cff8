// The dashboard in Chromium against a relay of the Redis outbox without Postgres, as an app that keeps its state in
// Redis runs it: the overview says Postgres is not used and marks the counts that are minimums (its walks stop at a
// cap); the Events screen offers only the filters the storage serves, lists payload previews and fetches a payload
// when an event is opened; text that could lie about itself (bidirectional controls) is shown escaped, and an error of
// thousands of characters is clamped above its table.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { configFromObject } from '../src/config/load-config.js';
import { outboxKeys } from '../src/outbox/redis/keys.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { launchChromium, type WatchedPage, watchedPage } from './helpers/browser.js';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix, waitFor } from './helpers/services.js';

const RLO = '\u202e';
const prefix = redisPrefix('dashboard_redis');
const outbox = {
  storage_type: 'redis',
  redis: { key_prefix: `${prefix}outbox:` },
  queue_pattern: `${prefix}{priority}`,
  allowed_queues: [`${prefix}q:*`],
  max_retries: 0,
  poll_interval: '100ms',
};
const config = configFromObject({ outbox });
const keys = outboxKeys(config.outbox.redis.keyPrefix);
/** More published events than the overview's walk reads (TRAFFIC_SCAN_CAP, 5,000). */
const MANY = 5100;
const BIG = 5 * 1024 * 1024;
const LONG_ERROR = `ERR ${'a line of a very long error reply\n'.repeat(240)}`.slice(0, 8000);
let redis: Redis;
let relay: HttpRelay;
let browser: Browser;
let tab: WatchedPage | undefined;
const ids: Partial<Record<'big' | 'spoof' | 'long', string>> = {};

async function write(events: NewOutboxEvent[], options = config.outbox): Promise<string[]> {
  const multi = redis.multi();
  const stored = await storeInOutbox(multi, events, options);
  await multi.exec();
  return stored.map((e) => e.id);
}

before(async () => {
  redis = new Redis(REDIS_URL);
  const launching = launchChromium();
  launching.catch(() => {});
  for (let i = 0; i < MANY; i += 1000) {
    await write(
      Array.from({ length: Math.min(1000, MANY - i) }, (_, j) => ({
        aggregateId: `o-${(i + j) % 100}`,
        eventType: 'order.created',
        payload: { n: i + j },
      })),
    );
  }
  [ids.big] = await write([{ aggregateId: 'big', eventType: 'big.blob', payload: { blob: 'b'.repeat(BIG) } }]);
  // Written by a producer whose allow-list is wider than the relay's: the relay refuses the destination, naming it.
  const wider = { ...config.outbox, allowedQueues: [`${prefix}*`] };
  [ids.spoof] = await write(
    [
      {
        aggregateId: 'spoof',
        eventType: 'spoof',
        payload: { rtl: `${RLO}gnp.exe` },
        queue: `${prefix}x:${RLO}gnp.exe`,
      },
    ],
    wider,
  );
  [ids.long] = await write([{ aggregateId: 'long', eventType: 'long', payload: {}, queue: `${prefix}x:long` }], wider);
  const file = writeConfigFile('dashboard-redis', {
    redis: { url: REDIS_URL },
    idempotency: { enabled: false },
    metrics: { collection_interval: 0 },
    outbox,
  });
  relay = await startHttpRelay(file, [], {}, 60_000);
  await waitFor(
    async () => (await redis.zcard(keys.failed)) === 2 && (await redis.zcard(keys.pending)) === 0,
    60_000,
    'the relay to publish and fail the seeded events',
  );
  // An error as long as a server's reply can be (the relay keeps 2,000 characters; other writers keep more).
  await redis.hset(keys.event(ids.long as string), 'x', LONG_ERROR);
  browser = await launching;
});

after(async () => {
  await tab?.close().catch(() => {});
  await browser?.close();
  await relay?.stop();
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

async function open(hash: string): Promise<Page> {
  tab = await watchedPage(browser);
  await tab.page.goto(`${relay.url}/${hash}`);
  return tab.page;
}

async function done(): Promise<void> {
  const t = tab;
  tab = undefined;
  try {
    t?.assertClean();
  } finally {
    await t?.close();
  }
}

describe('dashboard over the Redis outbox', { concurrency: false }, () => {
  test('overview: Postgres "not used"; counts past the walk cap shown as minimums', async () => {
    const page = await open('#/overview');
    const postgres = page.locator('[data-stat="postgres"] .stat-value');
    await postgres.waitFor();
    assert.equal(await postgres.textContent(), 'not used');
    const row = page.locator('tbody tr', { hasText: `${prefix}low` });
    await row.waitFor();
    assert.match((await row.locator('td').nth(3).textContent()) ?? '', /^5,000\+$/);
    await page.locator('#destinations-capped').waitFor();
    await page.locator('#rates-summary', { hasText: /at least 5,000 published/ }).waitFor();
    await done();
  });

  test('events: only the status filter; an address with another filter still lists, saying it was ignored', async () => {
    const page = await open('#/events?aggregate_id=o-1');
    await page.locator('#event-results tbody tr').first().waitFor();
    assert.equal(await page.getByLabel('Aggregate id').count(), 0);
    assert.equal(await page.getByLabel('Event type').count(), 0);
    await page.locator('#filters-note', { hasText: 'Ignored from the address: aggregate_id' }).waitFor();
    await page.getByLabel('Status').selectOption('failed');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('2 shown').waitFor();
    assert.equal(await page.getByRole('alert').count(), 0, 'no error banner');
    await done();
  });

  test('events: the list carries previews (kilobytes for a 5 MB payload); opening the event fetches it', async () => {
    const page = await open('#/events');
    const listing = page.waitForResponse((r) => r.url().includes('/api/v1/exactly-once/outbox?'));
    const bytes = (await (await listing).body()).length;
    assert.ok(bytes < 100_000, `the Events page downloaded ${bytes} bytes for its list`);
    const row = page.locator('#event-results tbody tr', { hasText: 'big.blob' });
    await row.waitFor();
    assert.match((await row.textContent()) ?? '', /5\.0 MB/);
    const detail = page.waitForResponse((r) => r.url().endsWith(`/outbox/events/${ids.big}`));
    await row.click();
    assert.ok((await (await detail).body()).length > BIG);
    await page.getByRole('complementary', { name: 'Event details' }).locator('pre.json').first().waitFor();
    await done();
  });

  test('dead: bidirectional controls shown escaped; an 8,000-character error clamped above its events', async () => {
    const page = await open('#/dead');
    const spoof = page.locator('.group', { hasText: 'spoof' });
    await spoof.waitFor();
    const error = (await spoof.locator('pre').first().textContent()) ?? '';
    assert.ok(!error.includes(RLO), 'no raw U+202E on the page');
    assert.match(error, /x:\\u202egnp\.exe/);

    const long = page.locator('.group', { hasText: 'long' });
    const pre = long.locator('pre').first();
    const box = await pre.boundingBox();
    assert.ok(box && box.height < 200, `the error takes ${box?.height}px`);
    await long.locator('tbody tr').first().waitFor();
    await long.getByRole('button', { name: 'Show all 8,000 characters' }).click();
    assert.equal(((await pre.textContent()) ?? '').length, 8000);

    await page.goto(`${relay.url}/#/events?open=${ids.spoof}`);
    const detail = page.getByRole('complementary', { name: 'Event details' });
    await detail.locator('pre.json').first().waitFor();
    const text = (await detail.textContent()) ?? '';
    assert.ok(!text.includes(RLO), 'no raw U+202E in the event');
    assert.match(text, /"rtl": "\\u202egnp\.exe"/);
    await done();
  });
});
