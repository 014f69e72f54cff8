import pg from 'pg';
import { storeInOutbox } from '../src/outbox/writer.js';
import type { BenchOptions, Row } from './lib/report.js';
import { createBenchDatabase } from './lib/services.js';
import { distribution, round } from './lib/stats.js';

export interface ProducerFigure {
  transactions: number;
  withoutMs: { mean: number; p50: number; p99: number };
  withMs: { mean: number; p50: number; p99: number };
  /** mean with / mean without - 1 */
  overhead: number;
  /** the same with the NOTIFY trigger disabled: what the wake-up costs the producer */
  withoutNotifyMs: { mean: number; p50: number; p99: number };
}

/**
 * Producer cost: one connection runs BEGIN; INSERT one business row; [storeInOutbox one event]; COMMIT, alternating
 * blocks of 100 transactions with and without the outbox so that drift on a shared machine hits both alike.
 */
export async function producerBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: ProducerFigure }> {
  const db = await createBenchDatabase('producer', 2);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query(`CREATE TABLE orders (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, amount_cents integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    const insertOrder = {
      name: 'insert-order',
      text: 'INSERT INTO orders (customer, amount_cents) VALUES ($1, $2) RETURNING id',
    };
    const without: number[] = [];
    const withOutbox: number[] = [];
    const one = async (outbox: boolean, i: number) => {
      const t = performance.now();
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>({
        ...insertOrder,
        values: [`customer-${i % 100}`, i % 10_000],
      });
      if (outbox) {
        await storeInOutbox(client, {
          aggregateType: 'order',
          aggregateId: String(rows[0]?.id),
          eventType: 'order.created',
          payload: { customer: `customer-${i % 100}`, amountCents: i % 10_000 },
        });
      }
      await client.query('COMMIT');
      (outbox ? withOutbox : without).push(performance.now() - t);
    };
    for (let i = 0; i < 200; i++) await one(i % 2 === 0, i); // warm-up: plans, caches
    without.length = 0;
    withOutbox.length = 0;
    const block = 100;
    for (let i = 0; i < opts.transactions; i += block) {
      for (let j = 0; j < block; j++) await one(false, i + j);
      for (let j = 0; j < block; j++) await one(true, i + j);
    }
    const summary = (v: number[]) => {
      const d = distribution(v);
      return { mean: round(d.mean, 3), p50: round(d.p50, 3), p99: round(d.p99, 3) };
    };
    const figure: ProducerFigure = {
      transactions: without.length,
      withoutMs: summary(without),
      withMs: summary(withOutbox),
      overhead: 0,
      withoutNotifyMs: { mean: 0, p50: 0, p99: 0 },
    };
    figure.overhead = round(figure.withMs.mean / figure.withoutMs.mean - 1, 3);
    // The NOTIFY share: the same outbox transactions with the wake-up trigger disabled.
    await client.query('ALTER TABLE exactly_once_outbox_events DISABLE TRIGGER exactly_once_outbox_notify');
    withOutbox.length = 0;
    for (let i = 0; i < opts.transactions; i++) await one(true, i);
    figure.withoutNotifyMs = summary(withOutbox);
    await client.query('ALTER TABLE exactly_once_outbox_events ENABLE TRIGGER exactly_once_outbox_notify');
    opts.progress(`producer: ${figure.withoutMs.mean} ms -> ${figure.withMs.mean} ms per transaction`);
    const rows: Row[] = [
      {
        benchmark: 'producer transaction, 1 business row + storeInOutbox',
        figure: `mean ${figure.withMs.mean} ms (p50 ${figure.withMs.p50}, p99 ${figure.withMs.p99})`,
        baseline: `without outbox: mean ${figure.withoutMs.mean} ms (p50 ${figure.withoutMs.p50})`,
        ratio: `+${round(figure.overhead * 100, 1)}%`,
        target: '<= +30%',
        met: figure.overhead <= 0.3,
      },
      {
        benchmark: 'same, NOTIFY trigger disabled (what the wake-up costs)',
        figure: `mean ${figure.withoutNotifyMs.mean} ms (p50 ${figure.withoutNotifyMs.p50})`,
        baseline: `without outbox: mean ${figure.withoutMs.mean} ms`,
        ratio: `+${round((figure.withoutNotifyMs.mean / figure.withoutMs.mean - 1) * 100, 1)}%`,
        target: 'info',
        met: undefined,
      },
    ];
    return { rows, figure };
  } finally {
    await client.end();
    await db.close();
  }
}
