// A producer process of this version, as an app runs it across `exactly-once migrate`: one transaction after another,
// each writing a business row and events with storeInOutbox (a single event with a generated id, then a batch of
// three with ids of its own), until SIGTERM. It prints one JSON line per 25 commits ({"committed": n}) and, on
// SIGTERM, {"done": true, committed, failed, errors} with the first errors' messages.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { storeInOutbox } from '../../src/outbox/writer.js';

const url = process.argv[2] as string;
const pool = new pg.Pool({ connectionString: url, max: 1 });
let stopping = false;
process.once('SIGTERM', () => {
  stopping = true;
});
let committed = 0;
let failed = 0;
const errors: string[] = [];
await pool.query('CREATE TABLE IF NOT EXISTS upgrade_orders (n integer PRIMARY KEY)');
for (let n = 0; !stopping; n++) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('INSERT INTO upgrade_orders (n) VALUES ($1)', [n]);
    const aggregateId = `o${n % 7}`;
    if (n % 2 === 0) {
      await storeInOutbox(client, { aggregateId, eventType: 'upgrade.single', payload: { n } });
    } else {
      await storeInOutbox(
        client,
        [0, 1, 2].map((i) => ({ id: randomUUID(), aggregateId, eventType: 'upgrade.batch', payload: { n, i } })),
      );
    }
    await client.query('COMMIT');
    committed++;
    if (committed % 25 === 0) console.log(JSON.stringify({ committed }));
  } catch (err) {
    failed++;
    if (errors.length < 5) errors.push((err as Error).message);
    await client.query('ROLLBACK').catch(() => {});
  } finally {
    client.release();
  }
}
console.log(JSON.stringify({ done: true, committed, failed, errors }));
await pool.end();
