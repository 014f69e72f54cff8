import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { RedisOutboxInspector } from '../src/outbox/redis/inspector.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix, waitFor } from './helpers/services.js';

// G2 + G3 + G5 with the outbox in Redis: relay processes (the real CLI) SIGKILLed at random while they drain. Every
// event reaches its list exactly once (the push and the mark are one script), in write order per aggregate (only a
// lease holder may push, and only an aggregate's head), and a killed relay's leases are taken over after claim_timeout.

const EVENTS = 20_000;
const AGGREGATES = 200;
const RELAYS = 3;
/** Kills that must land while events are pending before the survivors may finish. */
const KILLS = 4;

const prefix = redisPrefix('redis_outbox_crash');
const list = `${prefix}jobs`;
const outbox = {
  storage_type: 'redis',
  redis: { key_prefix: `${prefix}outbox:` },
  queue_pattern: list,
  batch_size: 25,
  poll_interval: '50ms',
  claim_timeout: '2s',
  publish_timeout: '1s',
};
let redis: Redis;

before(() => {
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

test(`${RELAYS} relays SIGKILLed at random over ${EVENTS} events in ${AGGREGATES} aggregates: each once, in order`, async () => {
  const config = configFromObject({ outbox });
  const inspector = new RedisOutboxInspector(redis, config.outbox);
  // No Postgres: the outbox is in Redis and idempotency is off, so the relays never connect to it.
  const configFile = writeConfigFile('redis-crash', {
    redis: { url: REDIS_URL },
    idempotency: { enabled: false },
    outbox,
  });
  const pending = async () => (await inspector.backlog()).pending;
  // LOG_LEVEL info: the relay says "relay started (Redis outbox)" once it claims, so kills land on working relays.
  const spawn = () => spawnRelay(configFile, [], { LOG_LEVEL: 'info' });
  // n-th event of an aggregate is written before the (n+1)-th, in many MULTI transactions, as an app would.
  const perTx = 500;
  for (let start = 0; start < EVENTS; start += perTx) {
    const events: NewOutboxEvent[] = [];
    for (let i = start; i < start + perTx; i++) {
      events.push({ aggregateId: `a${i % AGGREGATES}`, eventType: 'tick', payload: { n: Math.floor(i / AGGREGATES) } });
    }
    const multi = redis.multi();
    multi.incr(`${prefix}business-writes`);
    await storeInOutbox(multi, events, config.outbox);
    await multi.exec();
  }
  assert.equal(await pending(), EVENTS);
  // Started once every event is written, so the kills land mid-drain however fast the relays drain.
  const relays: RelayProcess[] = Array.from({ length: RELAYS }, spawn);
  let kills = 0;
  let killsWhileDraining = 0;
  let stopKilling = false;
  const started = (r: RelayProcess) => r.child.exitCode === null && r.stderr().includes('relay started');
  let killerError: Error | undefined;
  const killer = (async () => {
    while (!stopKilling) {
      // A relay takes seconds to start on a loaded machine: kill one that is running, shortly after it began work.
      await waitFor(() => stopKilling || relays.some(started), 60_000, 'a relay to start');
      if (stopKilling) break;
      const up = relays.map((r, i) => (started(r) ? i : -1)).filter((i) => i >= 0);
      const i = up[Math.floor(Math.random() * up.length)] as number;
      await new Promise((r) => setTimeout(r, 200 + Math.random() * 800));
      if (stopKilling) break;
      const victim = relays[i] as RelayProcess;
      const before = await pending();
      victim.child.kill('SIGKILL');
      await exitWithin(victim, 10_000);
      kills++;
      if (before > 0) killsWhileDraining++;
      relays[i] = spawn();
    }
  })().catch((err: Error) => {
    killerError = new Error(`${err.message}; relay output:\n${relays.map((r) => r.stderr()).join('\n')}`);
  });

  try {
    await waitFor(
      async () => {
        if (killerError) throw killerError;
        return killsWhileDraining >= KILLS || (await pending()) === 0;
      },
      90_000,
      'kills mid-drain',
    );
    stopKilling = true;
    await killer;
    await waitFor(async () => (await pending()) === 0, 60_000, 'every event published');
  } finally {
    stopKilling = true;
    await killer;
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
  }

  const jobs = (await redis.lrange(list, 0, -1)).reverse().map((j) => JSON.parse(j));
  const ids = new Set(jobs.map((j) => j.id));
  assert.equal(jobs.length, EVENTS, 'no event pushed twice');
  assert.equal(ids.size, EVENTS, 'every event pushed');
  const next = new Map<string, number>();
  for (const j of jobs) {
    const expected = next.get(j.aggregate_id) ?? 0;
    assert.equal(j.payload.n, expected, `aggregate ${j.aggregate_id} out of order`);
    next.set(j.aggregate_id, expected + 1);
  }
  assert.equal(next.size, AGGREGATES);
  const backlog = await inspector.backlog();
  assert.deepEqual([backlog.pending, backlog.failed], [0, 0]);
  assert.ok(killsWhileDraining >= 1, `no relay was killed mid-drain (${kills} kills)`);
  console.log(`kills: ${kills}, while draining: ${killsWhileDraining}`);
});
