import type { Redis } from 'ioredis';
import type { Logger } from '../../logger.js';
import { isCluster, type RedisClient } from '../../redis.js';

/** Reconnect delays after a lost subscription: at once first (a killed connection), then gently while Redis is down. */
const RECONNECT_MS = [0, 100, 250, 500, 1000, 2000, 5000];

/**
 * The Redis outbox's wake-up: one dedicated connection per relay SUBSCRIBEd to the outbox's doorbell channel, which
 * lua/store.lua PUBLISHes on when an app's EXEC makes an aggregate due (and lua/replay-5.lua on a replay). A ring calls
 * `onRing`, and the relay claims at once instead of at its next `poll_interval`, which stays the fallback.
 *
 * A message sent while the connection is down is lost, so every (re)subscription, once the server has confirmed it,
 * rings too: the relay claims right after, and finds whatever was stored in the gap. The connection does not
 * reconnect by itself (ioredis would resubscribe without telling us when); a lost one is replaced by a new one, on a
 * cluster to a master picked afresh (PUBLISH reaches the subscribers of every node), after `RECONNECT_MS`.
 *
 * @example
 * const bell = new RedisDoorbell(redis, keys.doorbell, () => wakeup.wake(), logger);
 * bell.start();
 * // ...
 * bell.stop();
 */
export class RedisDoorbell {
  readonly #redis: RedisClient;
  readonly #channel: string;
  readonly #onRing: () => void;
  readonly #log: Logger;
  #sub: Redis | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = true;
  #lost = false;

  constructor(redis: RedisClient, channel: string, onRing: () => void, logger: Logger) {
    this.#redis = redis;
    this.#channel = channel;
    this.#onRing = onRing;
    this.#log = logger;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const sub = this.#sub;
    this.#sub = undefined;
    sub?.disconnect();
  }

  #connect(): void {
    if (this.#stopped) return;
    const source = isCluster(this.#redis) ? pick(this.#redis.nodes('master')) : this.#redis;
    if (!source) {
      this.#retry(new Error('no cluster master known yet'));
      return;
    }
    const sub = source.duplicate({
      connectionName: 'exactly-once relay doorbell',
      autoResubscribe: false,
      retryStrategy: () => null,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
    });
    this.#sub = sub;
    let failed: unknown;
    sub.on('error', (err: unknown) => {
      failed = err;
    });
    sub.on('message', () => this.#onRing());
    sub.once('end', () => {
      if (this.#sub !== sub) return;
      this.#sub = undefined;
      this.#retry(failed ?? new Error('connection closed'));
    });
    sub.subscribe(this.#channel).then(
      () => {
        if (this.#sub !== sub) return;
        if (this.#lost) this.#log.info({ channel: this.#channel }, 'doorbell subscription restored; claiming now');
        this.#lost = false;
        this.#failures = 0;
        this.#onRing();
      },
      (err: unknown) => {
        // NOPERM on the channel, say: drop this connection; its `end` schedules the next try.
        failed = err;
        sub.disconnect();
      },
    );
  }

  #retry(err: unknown): void {
    if (this.#stopped) return;
    const delay = RECONNECT_MS[Math.min(this.#failures, RECONNECT_MS.length - 1)] as number;
    if (!this.#lost) {
      this.#log.warn(
        { err, channel: this.#channel },
        'doorbell subscription lost; re-subscribing (the relay polls every poll_interval meanwhile)',
      );
    }
    this.#lost = true;
    this.#failures++;
    this.#timer = setTimeout(() => this.#connect(), delay);
    this.#timer.unref();
  }
}

function pick<T>(items: readonly T[]): T | undefined {
  return items[Math.floor(Math.random() * items.length)];
}
