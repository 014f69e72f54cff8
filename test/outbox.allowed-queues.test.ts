import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { configFromObject, defaultConfig } from '../src/config/load-config.js';
import { ConfigError, OutboxQueueNotAllowedError } from '../src/errors.js';
import { Manager } from '../src/manager.js';
import { destinationPolicy, globMatch, isAllowedDestination } from '../src/outbox/allowed-queues.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { markKey } from '../src/publishers/hash-tag.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';

// The destination allow-list: an event's `queue` may name only the lists `queue_pattern` produces and what
// `outbox.allowed_queues` allows; never another application's key, never one of the relay's high-water marks.

let fx: OutboxFixture;

before(async () => {
  // No allow-list of the fixture's own: this file is about what each configuration allows.
  fx = await outboxFixture('allowed_queues', { allowed_queues: [] });
});
after(async () => {
  await fx.close();
});

const event = (aggregateId: string, queue?: string): NewOutboxEvent => ({
  aggregateId,
  eventType: 'e',
  payload: { aggregateId },
  ...(queue === undefined ? {} : { queue }),
});

async function outboxCount(aggregateId: string): Promise<number> {
  const { rows } = await fx.db.pool.query(
    'SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id = $1',
    [aggregateId],
  );
  return rows[0].n;
}

describe('the rule (what the writer and the relay both apply)', () => {
  test('* matches any run of characters, the rest is literal', () => {
    const cases: [string, string, boolean][] = [
      ['orders:*', 'orders:eu', true],
      ['orders:*', 'orders:', true],
      ['orders:*', 'orders', false],
      ['orders:*', 'xorders:eu', false],
      ['*:jobs', 'a:b:jobs', true],
      ['a*b*c', 'abc', true],
      ['a*b*c', 'aXbYcZ', false],
      ['a*b*c', 'aXXbbYc', true],
      ['{orders}:*', '{orders}:eu', true],
      ['exact', 'exact', true],
      ['exact', 'exactly', false],
      ['?', 'a', false],
      ['a.b', 'aXb', false],
      ['*', '', true],
    ];
    for (const [pattern, name, expected] of cases) {
      assert.equal(globMatch(pattern, name), expected, `${pattern} vs ${name}`);
    }
    // Linear-ish on a hostile name: no regular expression to backtrack.
    assert.equal(globMatch(`${'*a'.repeat(20)}b`, 'a'.repeat(1024)), false);
  });

  test('default: only the two lists of the default queue_pattern; no queue means the default list', () => {
    const config = defaultConfig();
    assert.deepEqual(config.outbox.allowedQueues, []);
    assert.equal(isAllowedDestination('jobqueue:high_priority', config.outbox), true);
    assert.equal(isAllowedDestination('jobqueue:low_priority', config.outbox), true);
    assert.equal(isAllowedDestination(null, config.outbox), true);
    assert.equal(isAllowedDestination(undefined, config.outbox), true);
    for (const other of ['jobqueue:medium_priority', 'jobqueue:*', 'sessions', 'jobqueue:low_priority ', '']) {
      assert.equal(isAllowedDestination(other, config.outbox), false, other);
    }
  });

  test('a custom queue_pattern replaces the default lists; allowed_queues adds patterns', () => {
    const outbox = configFromObject({
      outbox: { queue_pattern: 'app:{priority}', allowed_queues: ['orders:*'] },
    }).outbox;
    assert.equal(isAllowedDestination('app:high', outbox), true);
    assert.equal(isAllowedDestination('app:low', outbox), true);
    assert.equal(isAllowedDestination('orders:eu', outbox), true);
    assert.equal(isAllowedDestination('jobqueue:low_priority', outbox), false);
    // A `*` in queue_pattern is a literal character of the list name, not a wildcard.
    const literal = destinationPolicy({ queuePattern: 'q*{priority}' });
    assert.equal(literal.allows('q*high'), true);
    assert.equal(literal.allows('qXhigh'), false);
  });

  test("a high-water mark (or an earlier version's dedup marker) is never a destination, whatever the patterns allow", () => {
    const everything = destinationPolicy({ allowedQueues: ['*'] });
    assert.equal(everything.allows('anything:at:all'), true);
    const mark = markKey('jobqueue:low_priority', '0190a3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b', 3);
    assert.equal(everything.allows(mark), false);
    assert.match(everything.reason(mark) ?? '', /reserved.*relay's own keys/);
    assert.equal(everything.allows('x:eo:dedup:y'), false);
  });

  test('the refusal names the queue, the allowed patterns and the config key', () => {
    const reason = destinationPolicy({ allowedQueues: ['orders:*'] }).reason('sessions');
    assert.match(reason ?? '', /"sessions" is not an allowed destination/);
    assert.match(reason ?? '', /"jobqueue:high_priority", "jobqueue:low_priority", "orders:\*"/);
    assert.match(reason ?? '', /exactly_once\.outbox\.allowed_queues/);
  });
});

describe('config key outbox.allowed_queues', () => {
  test('bad values are refused with the key path', () => {
    for (const bad of ['orders:*', [''], [1], ['a\u0000']]) {
      assert.throws(
        () => configFromObject({ outbox: { allowed_queues: bad } }),
        (err: unknown) => err instanceof ConfigError && /outbox\.allowed_queues/.test(err.message),
        JSON.stringify(bad),
      );
    }
  });
});

describe('storeInOutbox refuses a destination that is not allowed, before anything is written', () => {
  test('without options: another application key is refused, the transaction stays usable', async () => {
    let caught: unknown;
    await fx.kysely.transaction().execute(async (trx) => {
      await storeInOutbox(trx, event('default-ok', 'jobqueue:high_priority'));
      try {
        await storeInOutbox(trx, [event('refused'), event('refused', 'sessions:active')]);
      } catch (err) {
        caught = err;
      }
      await storeInOutbox(trx, event('after-refusal'));
    });
    assert.ok(caught instanceof OutboxQueueNotAllowedError, String(caught));
    assert.equal(caught.code, 'EO_OUTBOX_QUEUE_NOT_ALLOWED');
    assert.equal(caught.field, 'queue');
    assert.equal(caught.queue, 'sessions:active');
    assert.equal(caught.index, 1);
    assert.match(caught.message, /^events\[1\]\.queue: "sessions:active" is not an allowed destination/);
    assert.equal(await outboxCount('refused'), 0);
    assert.equal(await outboxCount('default-ok'), 1);
    assert.equal(await outboxCount('after-refusal'), 1);
  });

  test('with config.outbox: its allowed_queues apply', async () => {
    const config = configFromObject({ outbox: { allowed_queues: [`${fx.prefix}orders:*`] } });
    const ok = await fx.kysely
      .transaction()
      .execute((trx) => storeInOutbox(trx, event('cfg-ok', `${fx.prefix}orders:eu`), config.outbox));
    assert.equal(ok.queue, `${fx.prefix}orders:eu`);
    await assert.rejects(
      fx.kysely
        .transaction()
        .execute((trx) => storeInOutbox(trx, event('cfg-refused', `${fx.prefix}invoices`), config.outbox)),
      { code: 'EO_OUTBOX_QUEUE_NOT_ALLOWED', index: undefined },
    );
    assert.equal(await outboxCount('cfg-refused'), 0);
  });

  test("an event aimed at a high-water mark is refused, so the relay's marks stay marks", async () => {
    // Without the reservation the attacker's job would be LPUSHed onto the mark of the victim's lane, turning it into
    // a list: every later publish script would fail on it (WRONGTYPE on HMGET), stopping that lane's destination.
    const { rows } = await fx.db.pool.query<{ outbox_id: string; lane: number }>(
      "SELECT outbox_id, hashtext('/victim') & 15 AS lane FROM exactly_once_outbox_meta",
    );
    const mark = markKey(fx.lowQueue, rows[0]?.outbox_id as string, rows[0]?.lane as number);
    await assert.rejects(
      fx.kysely.transaction().execute((trx) => storeInOutbox(trx, event('attacker', mark), { allowedQueues: ['*'] })),
      (err: unknown) => err instanceof OutboxQueueNotAllowedError && /reserved/.test(err.message),
    );
    const victim = await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, event('victim')));
    await fx.relay().publishDue();
    assert.deepEqual(
      (await fx.jobs()).filter((j) => j.aggregate_id === 'victim').map((j) => j.id),
      [victim.id],
    );
    assert.equal(await fx.redis.type(mark), 'hash', 'the relay wrote its mark there; nobody else did');
  });

  test('Manager.storeInOutbox applies the manager config; it refuses the pool too', async () => {
    const config = configFromObject({
      database: { url: fx.db.url },
      outbox: { queue_pattern: fx.config.outbox.queuePattern, allowed_queues: [`${fx.prefix}mgr:*`] },
      idempotency: { enabled: false },
    });
    const manager = new Manager(config, { pool: fx.db.pool, redis: fx.redis });
    try {
      const stored = await fx.kysely
        .transaction()
        .execute((trx) => manager.storeInOutbox(trx, event('mgr-ok', `${fx.prefix}mgr:list`)));
      assert.equal(stored.queue, `${fx.prefix}mgr:list`);
      await assert.rejects(
        fx.kysely.transaction().execute((trx) => manager.storeInOutbox(trx, event('mgr-no', 'jobqueue:low_priority'))),
        { code: 'EO_OUTBOX_QUEUE_NOT_ALLOWED' },
      );
      await assert.rejects(manager.storeInOutbox(fx.db.pool, event('mgr-pool')), {
        code: 'EO_OUTBOX_TRANSACTION_REQUIRED',
      });
      const alone = await manager.storeInOutboxStandalone(event('mgr-alone', `${fx.prefix}mgr:other`));
      assert.equal(alone.queue, `${fx.prefix}mgr:other`);
      assert.equal(await outboxCount('mgr-alone'), 1);
      await manager.publishOutboxEvents();
      assert.equal(await fx.redis.llen(`${fx.prefix}mgr:list`), 1);
      assert.equal(await fx.redis.llen(`${fx.prefix}mgr:other`), 1);
      assert.equal(await outboxCount('mgr-no'), 0);
      assert.equal(await outboxCount('mgr-pool'), 0);
    } finally {
      await manager.close();
    }
  });
});
