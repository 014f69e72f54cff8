import type { Redis } from 'ioredis';
import pg from 'pg';
import type { RedisServer } from '../../test/helpers/services.js';
import { sleep } from '../lib/stats.js';
import type { OwnedCluster } from './postgres-cluster.js';

/** What the injector can reach. Relay number i connects with `application_name` `<relayApplicationName>-<i>`. */
export interface FaultTargets {
  killRelay(): Promise<void>;
  killConsumer(): Promise<void>;
  redisServer: RedisServer;
  /** A client of the soak's Redis for the poison writes (never used while Redis is frozen). */
  redis: Redis;
  /** Destination lists of the soak's events. */
  lists: string[];
  databaseUrl: string;
  relayApplicationName: string;
  /** The soak's own Postgres cluster, or why there is none (then that fault is skipped). */
  postgres: OwnedCluster | { unavailable: string };
}

/** One kind of fault: `inject` returns false when it did not land (e.g. no list was empty); it is then tried again later. */
interface FaultKind {
  name: string;
  inject(): Promise<boolean>;
}

/**
 * Two lanes inject at the same time, each one fault after another: server outages (slow: a restart takes seconds on a
 * loaded machine) and process-level faults, which therefore also land while a server is down or frozen.
 */
const LANES = {
  servers: ['redis restart (AOF)', 'redis freeze (SIGSTOP/SIGCONT)', 'postgres restart (soak-owned cluster)'],
  processes: [
    'relay SIGKILL',
    'consumer SIGKILL',
    'pg_terminate_backend of relay connections',
    'publish error (WRONGTYPE list)',
  ],
} as const;
export type FaultName = (typeof LANES)[keyof typeof LANES][number];
export const FAULT_NAMES: readonly FaultName[] = [...LANES.processes, ...LANES.servers];

const between = (min: number, max: number) => min + Math.floor(Math.random() * (max - min));

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

// Per-event publish errors: the list is moved aside and a string put in its place, so every push to it fails with
// WRONGTYPE (the publisher's per-event error path: that event is retried, later events of its aggregate are held).
// Nothing is pushed while the key is a string, so putting the list back restores it exactly; no job is ever lost.
const POISON_LUA = `if redis.call('TYPE', KEYS[1]).ok == 'string' then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[2]) end
redis.call('SET', KEYS[1], 'not a list') return 1`;
const RESTORE_LUA = `if redis.call('TYPE', KEYS[1]).ok == 'string' then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[1]) end return 1`;

function faultKinds(t: FaultTargets): Record<FaultName, FaultKind['inject'] | string> {
  let terminations = 0;
  let restarts = 0;
  return {
    'relay SIGKILL': async () => {
      await t.killRelay();
      return true;
    },
    'consumer SIGKILL': async () => {
      await t.killConsumer();
      return true;
    },
    'redis restart (AOF)': async () => {
      await t.redisServer.kill();
      try {
        await sleep(between(300, 1000)); // the outage itself
      } finally {
        await t.redisServer.start();
      }
      return true;
    },
    'redis freeze (SIGSTOP/SIGCONT)': async () => {
      if (!t.redisServer.signal('SIGSTOP')) return false;
      // Sometimes longer than publish_timeout (2 s): the relay gives up on a script that Redis runs once it wakes, the
      // batch is rolled back, and the next claim must find the dedup markers (G2's window).
      try {
        await sleep(between(500, 3000));
      } finally {
        t.redisServer.signal('SIGCONT');
      }
      return true;
    },
    'pg_terminate_backend of relay connections': async () => {
      const admin = new pg.Client({ connectionString: t.databaseUrl, connectionTimeoutMillis: 5000 });
      admin.on('error', () => {});
      try {
        await admin.connect();
        // Every third time everybody's connections go (producers and consumers too), the other times the relays':
        // their claim connections and the LISTEN connection that wakes them.
        const everyone = ++terminations % 3 === 0;
        const { rowCount } = await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND (application_name LIKE $1 || '-%' OR $2)`,
          [t.relayApplicationName, everyone],
        );
        return (rowCount ?? 0) > 0;
      } finally {
        await admin.end().catch(() => {});
      }
    },
    'postgres restart (soak-owned cluster)':
      'unavailable' in t.postgres
        ? t.postgres.unavailable
        : async () => {
            const cluster = t.postgres as OwnedCluster;
            // Alternate a crash (recovery from WAL on start) and a clean fast shutdown.
            await cluster.stop(++restarts % 2 === 1 ? 'immediate' : 'fast');
            try {
              await sleep(between(200, 1000)); // the outage itself
            } finally {
              await cluster.start();
            }
            return true;
          },
    'publish error (WRONGTYPE list)': async () => {
      const list = t.lists[Math.floor(Math.random() * t.lists.length)] as string;
      const aside = `${list}:aside`;
      if ((await t.redis.eval(POISON_LUA, 2, list, aside)) !== 1) return false;
      await sleep(between(300, 1500)); // the relays' pushes to this list fail meanwhile
      // The list must come back even if Redis is down or frozen right now (the other lane): retry until it does.
      const deadline = Date.now() + 120_000;
      for (;;) {
        try {
          await t.redis.eval(RESTORE_LUA, 2, list, aside);
          return true;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`could not restore ${list}: ${(err as Error).message}`);
          await sleep(100);
        }
      }
    },
  };
}

export interface InjectorResult {
  counts: Record<FaultName, number>;
  /** Kinds that could not be injected at all, with the reason. */
  skipped: Partial<Record<FaultName, string>>;
  /** Attempts that failed (e.g. pg_terminate_backend while Postgres was restarting); each was tried again later. */
  failedAttempts: number;
}

/**
 * Injects faults until `isRunning()` turns false: in each lane one at a time, with a pause of `gapMs` (min, max)
 * between process faults and three times that between server outages. Kinds are dealt from a shuffled deck, so every kind comes up once per round (a short run still sees
 * all of them); a fault that did not land goes back into the deck.
 */
export async function injectFaults(
  targets: FaultTargets,
  options: { isRunning: () => boolean; gapMs: [number, number]; log: (m: string) => void; verbose?: boolean },
): Promise<InjectorResult> {
  const kinds = faultKinds(targets);
  const counts = Object.fromEntries(FAULT_NAMES.map((n) => [n, 0])) as Record<FaultName, number>;
  const skipped: InjectorResult['skipped'] = {};
  let failedAttempts = 0;
  const lane = async (names: readonly FaultName[], gapMs: [number, number]) => {
    const available: FaultName[] = [];
    for (const name of names) {
      const kind = kinds[name];
      if (typeof kind === 'string') skipped[name] = kind;
      else available.push(name);
    }
    let deck: FaultName[] = [];
    const putBack = (name: FaultName) => deck.splice(Math.floor(Math.random() * (deck.length + 1)), 0, name);
    while (options.isRunning() && available.length > 0) {
      await sleep(between(...gapMs));
      if (!options.isRunning()) break;
      if (deck.length === 0) deck = shuffle([...available]);
      const name = deck.pop() as FaultName;
      const inject = kinds[name] as FaultKind['inject'];
      const started = performance.now();
      try {
        const landed = await inject();
        if (options.verbose) {
          options.log(
            `${name}: ${landed ? 'injected' : 'did not land'} (${Math.round(performance.now() - started)} ms)`,
          );
        }
        if (landed) counts[name]++;
        else putBack(name);
      } catch (err) {
        // Typically the server it needs is down or frozen by the other lane right now; it comes up again later.
        failedAttempts++;
        if (options.verbose) options.log(`${name}: could not inject (${(err as Error).message})`);
        putBack(name);
      }
    }
  };
  const [min, max] = options.gapMs;
  // Server outages are spaced out more, so that the servers are up most of the time and work gets done between them.
  await Promise.all([lane(LANES.processes, [min, max]), lane(LANES.servers, [3 * min, 3 * max])]);
  return { counts, skipped, failedAttempts };
}
