import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { storeInOutbox } from '../../src/outbox/writer.js';
import { sleep } from '../lib/stats.js';

export interface ProducerStats {
  committedTx: number;
  rolledBackTx: number;
  errors: number;
  /** The latest producer error, for the report (most are the injected outages). */
  lastError?: string;
  /** Ids of events whose transaction was rolled back on purpose: they must never show up. */
  rolledBack: Set<string>;
}

/**
 * One of the soak's producers: transactions of 1-4 events on the aggregates it owns (`aggregate % producers ===
 * index`), a tenth of them rolled back, each writing the soak's ledger row and the outbox rows together.
 */
export async function produce(options: {
  databaseUrl: string;
  index: number;
  producers: number;
  aggregates: number;
  eventsPerSecond: number;
  /** The priority header routing an aggregate's events to its list (`queue_pattern` soak:{priority}). */
  priorityOf: (aggregate: number) => 'high' | 'low';
  isRunning: () => boolean;
  stats: ProducerStats;
}): Promise<void> {
  const { stats } = options;
  const mine = Array.from({ length: options.aggregates }, (_, a) => a).filter(
    (a) => a % options.producers === options.index,
  );
  const txPerSecond = options.eventsPerSecond / options.producers / 2.5;
  let client: pg.Client | undefined;
  while (options.isRunning()) {
    const started = performance.now();
    try {
      if (!client) {
        client = new pg.Client({ connectionString: options.databaseUrl, connectionTimeoutMillis: 5000 });
        client.on('error', () => {});
        await client.connect();
      }
      const aggregate = mine[Math.floor(Math.random() * mine.length)] as number;
      const count = 1 + Math.floor(Math.random() * 4);
      const rollback = Math.random() < 0.1;
      await client.query('BEGIN');
      // One producer owns each aggregate and writes it sequentially, so "the next n" is the committed maximum + 1,
      // read afresh in every transaction (a COMMIT cut off by a terminated connection may or may not have landed).
      const { rows } = await client.query<{ next: number }>(
        'SELECT coalesce(max(n) + 1, 0) AS next FROM soak_committed WHERE aggregate_id = $1',
        [`agg-${aggregate}`],
      );
      const first = rows[0]?.next ?? 0;
      const events = Array.from({ length: count }, (_, k) => ({
        id: randomUUID(),
        aggregateType: 'soak',
        aggregateId: `agg-${aggregate}`,
        eventType: 'soak.tick',
        headers: { priority: options.priorityOf(aggregate) },
        payload: { n: first + k },
      }));
      await client.query(
        'INSERT INTO soak_committed (event_id, aggregate_id, n) SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[])',
        [events.map((e) => e.id), events.map((e) => e.aggregateId), events.map((e) => e.payload.n)],
      );
      await storeInOutbox(client, events);
      if (rollback) {
        for (const e of events) stats.rolledBack.add(e.id);
        await client.query('ROLLBACK');
        stats.rolledBackTx++;
      } else {
        await client.query('COMMIT');
        stats.committedTx++;
      }
    } catch (err) {
      stats.errors++;
      stats.lastError = (err as Error).message;
      client?.end().catch(() => {});
      client = undefined;
      await sleep(50);
    }
    await sleep(Math.max(0, 1000 / txPerSecond - (performance.now() - started)));
  }
  await client?.end().catch(() => {});
}
