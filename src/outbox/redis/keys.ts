/**
 * Names of the Redis outbox's keys. Every key starts with `outbox.redis.key_prefix` (default `eo:{outbox}:`), whose
 * hash tag puts them all in one cluster slot, so each script below touches one slot only.
 *
 * | key              | type   | holds                                                                              |
 * |------------------|--------|------------------------------------------------------------------------------------|
 * | `seq`            | string | INCR counter: write order of every event                                           |
 * | `e:<id>`         | hash   | one event: `d` (event JSON), `q` seq, `c` created ms, `s` status, `r` retries, `n` next attempt ms, `x` last error, `pa` published ms, `g` its aggregate (once it failed); a payload over 16 KiB adds `dm` (the event without it), `pv` (its preview), `pb` (its bytes): stored-event.ts |
 * | `a:<aggregate>`  | list   | ids of the aggregate's pending events, oldest first (its head is the only one that may go) |
 * | `due`            | zset   | aggregates whose head may go now, scored by the head's seq (oldest first)           |
 * | `delayed`        | zset   | aggregates whose head waits for a retry, scored by the time it is due (ms)          |
 * | `leases`         | zset   | aggregates a relay holds, scored by when its lease ends (ms, Redis clock)           |
 * | `owners`         | hash   | aggregate -> token of the relay holding its lease                                   |
 * | `pending`, `published`, `failed` | zset | event ids by status, scored by seq: counts, listing, cleanup      |
 * | `doorbell`       | pub/sub channel | rung when an aggregate becomes due: relays claim at once (doorbell.ts) |
 *
 * An aggregate is in at most one of `due`, `delayed`, `leases` at a time (the scripts keep it so, and each tolerates a
 * stray entry in another). Times are the Redis server's clock (`TIME`), never a relay's or the app's.
 */
export interface OutboxKeys {
  readonly prefix: string;
  readonly seq: string;
  readonly due: string;
  readonly delayed: string;
  readonly leases: string;
  readonly owners: string;
  readonly pending: string;
  readonly published: string;
  readonly failed: string;
  /** A channel, not a key: PUBLISH reaches its subscribers on every node of a cluster, whatever its slot. */
  readonly doorbell: string;
  event(id: string): string;
  aggregateList(aggregate: string): string;
}

/** The default `outbox.redis.key_prefix`. */
export const DEFAULT_KEY_PREFIX = 'eo:{outbox}:';

export function outboxKeys(prefix: string = DEFAULT_KEY_PREFIX): OutboxKeys {
  return {
    prefix,
    seq: `${prefix}seq`,
    due: `${prefix}due`,
    delayed: `${prefix}delayed`,
    leases: `${prefix}leases`,
    owners: `${prefix}owners`,
    pending: `${prefix}pending`,
    published: `${prefix}published`,
    failed: `${prefix}failed`,
    doorbell: `${prefix}doorbell`,
    event: (id) => `${prefix}e:${id}`,
    aggregateList: (aggregate) => `${prefix}a:${aggregate}`,
  };
}

/**
 * The aggregate's member name in `due`/`delayed`/`leases` and the suffix of its list. NUL cannot occur in either part
 * (the writer refuses it), so `("a", "b:c")` and `("a:b", "c")` never meet.
 */
export function aggregateMember(aggregateType: string, aggregateId: string): string {
  return `${aggregateType}\u0000${aggregateId}`;
}
