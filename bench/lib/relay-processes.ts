import type { Redis } from 'ioredis';
import pg from 'pg';
import { spawnRelay, writeConfigFile } from '../../test/helpers/relay-process.js';
import { sleep } from './stats.js';

/**
 * Drain with `processes` relay daemons (`exactly-once relay --config FILE`, the real CLI as operators run it), and
 * resolve with the seconds from the moment every daemon's first claim was ready to the moment the `n`-th job was in
 * `list`. A daemon takes a second or two to start (tsx, connections, LISTEN), which is not drain time: the lane
 * table is held under an ACCESS EXCLUSIVE lock until every daemon's claim waits on it, then released, so they start
 * together.
 * Jobs are counted with LLEN every few ms (the daemons have no hook into this process).
 */
export async function timeRelayProcesses(options: {
  dbUrl: string;
  redisUrl: string;
  redis: Redis;
  /** the relays' `queue_pattern` prefix; jobs land in `${prefix}jobqueue:low_priority` */
  prefix: string;
  n: number;
  processes: number;
  /** `outbox` keys of the daemons' config file (batch_size, concurrency, ...) */
  outbox: Record<string, unknown>;
  timeoutMs?: number;
}): Promise<number> {
  const list = `${options.prefix}jobqueue:low_priority`;
  const configFile = writeConfigFile('bench-drain', {
    database: { url: options.dbUrl },
    redis: { url: options.redisUrl },
    outbox: {
      queue_pattern: `${options.prefix}jobqueue:{priority}_priority`,
      dedup_window: '10m',
      poll_interval: '100ms',
      ...options.outbox,
    },
  });
  const gate = new pg.Client({ connectionString: options.dbUrl });
  await gate.connect();
  const relays: ReturnType<typeof spawnRelay>[] = [];
  try {
    await gate.query('BEGIN');
    await gate.query('LOCK TABLE exactly_once_outbox_lanes IN ACCESS EXCLUSIVE MODE');
    for (let i = 0; i < options.processes; i++) relays.push(spawnRelay(configFile));
    const loops = options.processes * Number(options.outbox.concurrency ?? 1);
    const readyBy = Date.now() + 60_000;
    for (;;) {
      // pg_stat_activity is read once per transaction unless told otherwise, and this one holds the lock.
      await gate.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await gate.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE '%SET LOCAL jit = off%' AND pid <> pg_backend_pid()`,
      );
      if ((rows[0]?.n ?? 0) >= loops) break;
      const dead = relays.find((r) => r.child.exitCode !== null);
      if (dead || Date.now() > readyBy) {
        throw new Error(`relay daemons did not start claiming: ${dead?.stderr() ?? relays.map((r) => r.stderr())}`);
      }
      await sleep(20);
    }
    const started = performance.now();
    await gate.query('COMMIT');
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    while ((await options.redis.llen(list)) < options.n) {
      if (Date.now() > deadline) throw new Error(`relay daemons did not publish ${options.n} events in time`);
      await sleep(5);
    }
    return (performance.now() - started) / 1000;
  } finally {
    await gate.query('ROLLBACK').catch(() => {});
    await gate.end();
    for (const r of relays) r.child.kill('SIGTERM');
    await Promise.all(relays.map((r) => r.exited));
  }
}
