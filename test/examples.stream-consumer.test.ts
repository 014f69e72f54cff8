import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { Manager } from '../src/manager.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

// examples/stream-consumer.ts run as its users would run it (a process per consumer), on the relay's stream: one
// consumer dies holding delivered, unacknowledged entries, another is SIGKILLed mid-way; the survivor takes their
// entries over with XAUTOCLAIM. Every event's effect (a ledger row, written by processInTransaction) exists once.
const EXAMPLE = new URL('../examples/stream-consumer.ts', import.meta.url).pathname;
const EVENTS = 300;
const GROUP = 'ledger';
/** The example's table (it creates it too, IF NOT EXISTS). */
const LEDGER_DDL =
  'CREATE TABLE IF NOT EXISTS stream_ledger (event_id uuid NOT NULL, aggregate_id text NOT NULL, payload jsonb NOT NULL)';

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('stream_consumer', { publisher: 'stream' });
});
after(async () => {
  await fx.close();
});

interface Consumer {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

function startConsumer(name: string, stream: string): Consumer {
  const child = spawn(process.execPath, ['--import', 'tsx', EXAMPLE], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DATABASE_URL: fx.db.url,
      REDIS_URL,
      STREAM: stream,
      GROUP,
      CONSUMER: name,
      CLAIM_IDLE_MS: '300',
      BLOCK_MS: '200',
      LOG_LEVEL: 'warn',
      EXACTLY_ONCE_CONFIG: '',
    },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, exited, output: () => out };
}

async function ledgerRows(): Promise<number> {
  return (await fx.db.pool.query('SELECT count(*)::int AS n FROM stream_ledger')).rows[0].n;
}

async function pending(stream: string): Promise<number> {
  const [count] = (await fx.redis.xpending(stream, GROUP)) as [number];
  return Number(count);
}

test('consumers crash mid-way; XAUTOCLAIM hands their entries over; every effect happens exactly once', async () => {
  const stream = `${fx.prefix}ledger-stream`;
  const events = await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: EVENTS }, (_, n) => ({
      aggregateId: `acct-${n % 10}`,
      eventType: 'ledger.entry',
      payload: { n, cents: 100 + n },
      queue: stream,
    })),
    fx.config.outbox,
  );
  const relay = new Relay({
    config: fx.config,
    pool: fx.db.pool,
    publisher: createPublisher(fx.config, { redis: fx.redis }),
  });
  assert.equal((await relay.publishDue()).published, EVENTS);
  assert.equal(await fx.redis.xlen(stream), EVENTS);

  // A consumer that read 20 entries and died before acknowledging any of them: after COMMITting the effects of the
  // first 10 (the crash window a redelivery must not repeat), before even starting the other 10.
  await fx.redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM');
  const read = (await fx.redis.call('XREADGROUP', 'GROUP', GROUP, 'ghost', 'COUNT', 20, 'STREAMS', stream, '>')) as [
    string,
    [string, string[]][],
  ][];
  const ghostEntries = read[0]?.[1] ?? [];
  assert.equal(ghostEntries.length, 20);
  await fx.db.pool.query(LEDGER_DDL);
  const manager = new Manager(fx.config, { pool: fx.db.pool, redis: fx.redis });
  try {
    for (const [, flat] of ghostEntries.slice(0, 10)) {
      const id = flat[flat.indexOf('id') + 1] as string;
      const payload = flat[flat.indexOf('payload') + 1] as string;
      const key = manager.generateIdempotencyKey(stream, '', id);
      await manager.processInTransaction(key, (trx) =>
        trx.insertInto('stream_ledger').values({ event_id: id, aggregate_id: 'ghost', payload }).execute(),
      );
    }
  } finally {
    await manager.close();
  }
  assert.equal(await pending(stream), 20);
  assert.equal(await ledgerRows(), 10);

  const consumers: Consumer[] = [];
  try {
    const first = startConsumer('c1', stream);
    consumers.push(first);
    await waitFor(async () => (await ledgerRows()) >= EVENTS / 3, 60_000, 'the first consumer to apply a third');
    first.child.kill('SIGKILL');
    await first.exited;
    const applied = await ledgerRows();
    assert.ok(applied < EVENTS, `c1 was killed mid-way (${applied} applied)`);

    const second = startConsumer('c2', stream);
    consumers.push(second);
    await waitFor(
      async () => (await ledgerRows()) >= EVENTS && (await pending(stream)) === 0,
      60_000,
      'every entry applied and acknowledged',
    );
    second.child.kill('SIGTERM');
    const exit = await second.exited;
    assert.equal(exit.code, 0, `the consumer stops cleanly on SIGTERM:\n${second.output()}`);
  } finally {
    for (const c of consumers) c.child.kill('SIGKILL');
    await Promise.all(consumers.map((c) => c.exited));
  }

  const { rows } = await fx.db.pool.query<{ event_id: string; n: number }>(
    'SELECT event_id, count(*)::int AS n FROM stream_ledger GROUP BY event_id',
  );
  assert.equal(rows.filter((r) => r.n !== 1).length, 0, 'no effect applied twice');
  assert.deepEqual(new Set(rows.map((r) => r.event_id)), new Set(events.map((e) => e.id)), 'every effect applied');
});
