import type pg from 'pg';
import type { Config } from '../../config/load-config.js';
import { NotMigratedError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { type DestinationPolicy, destinationPolicy } from '../allowed-queues.js';
import type { BatchResult, LoopDoorbell, ProducerWait, PublishGate, RelayStorage } from '../relay-core.js';
import { ZERO_SUMMARY } from '../summary.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from '../types.js';
import type { Wakeup } from '../wakeup.js';
import { Claim, discardClaim } from './claim.js';
import { commitBatch, planCommit } from './commit.js';
import { Doorbell, ProducerSweep } from './doorbell.js';
import { COMPACT_FUNCTION, EVENTS_TABLE, META_TABLE } from './tables.js';
import { TrafficCounter } from './traffic.js';

/** A crash switch for tests (src/outbox/fault-injection.ts); the CLI builds it, libraries never read it. */
export interface AfterPushHook {
  afterPush(): Promise<void>;
}

export interface PostgresStorageOptions {
  config: Config;
  pool: pg.Pool;
  publisher: Publisher;
  log: Logger;
  wakeup: Wakeup;
  testFault?: AfterPushHook | undefined;
  /** Names this process's rows in the traffic table. */
  relayId: string;
}

/**
 * Full batches a loop claims one at a time after a claim it opened ahead found nothing; doubled after each such claim
 * in a row, up to the maximum (one busy lane: the overlap only wastes a claim per batch).
 */
const OVERLAP_PAUSE = 4;
const MAX_OVERLAP_PAUSE = 64;
/** Cursor rows written by this process between two compactions of the progress table. */
const COMPACT_EVERY = 20_000;
/** A compaction waits at most this long for the lanes (another relay's batch in flight); else it is tried later. */
const COMPACT_LOCK_TIMEOUT_MS = 500;

/** Per claim loop: the claim opened ahead for its next batch, and the overlap's pause. */
interface LoopState {
  next: Promise<Claim> | undefined;
  pause: number;
  pauseFor: number;
}

/**
 * The Postgres outbox under the relay core (migrations/0008, 0009): a batch is one transaction that locks lanes,
 * reads them (`exactly_once_outbox_claim`), writes through the publisher while holding them, then parks what did not
 * go out and advances the lanes' cursors (commit.ts). Nothing of an event row is ever updated.
 *
 * Overlap: while a full batch is being written and committed, the next claim runs on a second connection. It cannot
 * take that batch's lanes (their row locks are held until its COMMIT), so it is what a second relay would claim: G3
 * holds as with N relays. A claim opened in vain pauses the overlap, twice as long each time in a row.
 */
export class PostgresOutboxStorage implements RelayStorage {
  readonly name = 'postgres';
  readonly doorbell: LoopDoorbell;
  readonly #config: Config;
  readonly #pool: pg.Pool;
  readonly #publisher: Publisher;
  readonly #log: Logger;
  readonly #bell: Doorbell;
  readonly #fault: AfterPushHook | undefined;
  /** The allow-list again: rows can be inserted by plain SQL, bypassing the writer's check. */
  readonly #destinations: DestinationPolicy;
  readonly #loops = new Map<number, LoopState>();
  /** Where the next claim starts looking, so every lane gets its turn when batches are full. */
  #firstLane = Math.floor(Math.random() * 1024);
  #outboxId: string | undefined;
  #cursorRows = 0;
  #compacting: Promise<void> | undefined;
  readonly #traffic: TrafficCounter;

  constructor(options: PostgresStorageOptions) {
    this.#config = options.config;
    this.#pool = options.pool;
    this.#publisher = options.publisher;
    this.#log = options.log;
    this.#fault = options.testFault;
    this.#destinations = destinationPolicy(this.#config.outbox);
    this.#traffic = new TrafficCounter(this.#pool, options.relayId, this.#config.outbox, this.#log);
    this.#bell = new Doorbell({
      url: this.#config.database.url,
      logger: this.#log,
      wakeup: options.wakeup,
      connectTimeoutMs: this.#config.database.connectTimeout,
    });
    const pool = this.#pool;
    const bell = this.#bell;
    this.doorbell = {
      awake: (loop) => bell.setAwake(loop),
      rest: (loop) => bell.rest(loop),
      sweep: async (): Promise<ProducerWait> => {
        const sweep = await ProducerSweep.begin(pool);
        return {
          get done() {
            return sweep.done;
          },
          nextDelay: () => sweep.nextDelay(),
          refresh: () => sweep.refresh(pool),
        };
      },
    };
  }

  async start(): Promise<void> {
    await this.outboxId();
    await this.#bell.start();
  }

  async stop(): Promise<void> {
    await this.#compacting;
    await this.#traffic.drain();
    await this.#bell.stop();
  }

  /** The outbox's id (names the publisher's high-water marks); throws `NotMigratedError` before `migrate`. */
  async outboxId(): Promise<string> {
    if (this.#outboxId) return this.#outboxId;
    const { rows } = await this.#pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [EVENTS_TABLE]);
    if (!rows[0]?.t) throw new NotMigratedError(EVENTS_TABLE);
    const meta = await this.#pool.query<{ outbox_id: string }>(`SELECT outbox_id FROM ${META_TABLE}`);
    const id = meta.rows[0]?.outbox_id;
    if (!id) throw new NotMigratedError(META_TABLE);
    this.#outboxId = id;
    return id;
  }

  async release(loop: number): Promise<void> {
    const state = this.#loops.get(loop);
    if (!state) return;
    const next = state.next;
    state.next = undefined;
    await discardClaim(next);
  }

  async batch(gate: PublishGate, loop: number | undefined): Promise<BatchResult> {
    const outboxId = await this.outboxId();
    const state = loop === undefined ? undefined : this.#loopState(loop);
    const ahead = state?.next;
    if (state) state.next = undefined;
    let claim = await (ahead ?? this.#open());
    if (ahead && state) {
      if (claim.size === 0 && !claim.refreshed) {
        // Opened while the batch before held the lanes it would have read: claim again now, and pause the overlap.
        await discardClaim(Promise.resolve(claim));
        state.pause = state.pauseFor;
        state.pauseFor = Math.min(state.pauseFor * 2, MAX_OVERLAP_PAUSE);
        claim = await this.#open();
      } else {
        state.pauseFor = OVERLAP_PAUSE;
      }
    }
    if (state && claim.size >= this.#config.outbox.batchSize) this.#maybeOpenAhead(state, gate);
    try {
      if (claim.size === 0) {
        await claim.client.query('COMMIT');
        return { summary: { ...ZERO_SUMMARY }, more: claim.refreshed || state?.next !== undefined };
      }
      const push = claim.items.filter((i) => i.action === 'push').map((i) => i.event);
      const outcomes =
        push.length === 0
          ? []
          : await gate.publish(() =>
              this.#publishAllowed(push, {
                deadline: claim.deadline,
                client: claim.client,
                outboxId,
                cursors: claim.cursors(),
              }),
            );
      if (this.#fault && push.length > 0) await this.#fault.afterPush();
      const plan = planCommit(claim, outcomes, this.#config.outbox, this.#log);
      await commitBatch(claim.client, plan);
      this.#traffic.count(
        push.filter((_, i) => outcomes[i]?.kind === 'published' || outcomes[i]?.kind === 'duplicate'),
      );
      this.#cursorRows += plan.lanes.length;
      if (this.#cursorRows >= COMPACT_EVERY) this.#compact();
      return { summary: plan.summary, more: true, soonestRetryMs: plan.soonestRetryMs };
    } catch (err) {
      await claim.rollback();
      throw err;
    } finally {
      claim.release();
    }
  }

  #open(): Promise<Claim> {
    const first = this.#firstLane++;
    return Claim.open(this.#pool, this.#config.outbox, this.#log, first);
  }

  #loopState(loop: number): LoopState {
    let state = this.#loops.get(loop);
    if (!state) {
      state = { next: undefined, pause: 0, pauseFor: OVERLAP_PAUSE };
      this.#loops.set(loop, state);
    }
    return state;
  }

  /**
   * Open the loop's next claim now, only while the circuit is closed and on a connection free now: one waited for
   * would be handed over after the batch before failed, i.e. a claim during an outage.
   */
  #maybeOpenAhead(state: LoopState, gate: PublishGate): void {
    if (state.pause > 0) {
      state.pause--;
      return;
    }
    const pool = this.#pool;
    const free = pool.idleCount > 0 || pool.totalCount < (pool.options.max ?? 10);
    if (!gate.breakerClosed || !free || pool.waitingCount > 0) return;
    const next = this.#open();
    next.catch(() => {});
    state.next = next;
  }

  /**
   * Events whose destination the allow-list refuses are never sent: each fails at once, without retries (no retry can
   * change the verdict), and the rest of the batch goes out as usual.
   */
  async #publishAllowed(
    events: ClaimedEvent[],
    options: Parameters<Publisher['publish']>[1],
  ): Promise<PublishOutcome[]> {
    const refusals = events.map((e) => (e.queue === null ? undefined : this.#destinations.reason(e.queue)));
    if (refusals.every((r) => r === undefined)) return this.#publisher.publish(events, options);
    const allowed = events.filter((_, i) => refusals[i] === undefined);
    const sent = allowed.length > 0 ? await this.#publisher.publish(allowed, options) : [];
    let next = 0;
    return refusals.map((reason) =>
      reason === undefined
        ? (sent[next++] ?? { kind: 'failed', error: 'publisher returned no outcome' })
        : { kind: 'failed', error: `destination refused: ${reason}`, permanent: true },
    );
  }

  /** Keep the progress table small: truncate it to each lane's latest cursor, in the background, one at a time. */
  #compact(): void {
    if (this.#compacting) return;
    this.#cursorRows = 0;
    this.#compacting = (async () => {
      const client = await this.#pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        await client.query(`SET LOCAL lock_timeout = ${COMPACT_LOCK_TIMEOUT_MS}`);
        const { rows } = await client.query<{ n: number }>(`SELECT ${COMPACT_FUNCTION}() AS n`);
        await client.query('COMMIT');
        this.#log.debug({ removed: rows[0]?.n }, 'progress table compacted');
      } catch (err) {
        await client.query('ROLLBACK').catch((e: unknown) => {
          broken = e;
        });
        this.#log.debug({ err }, 'progress table compaction skipped; tried again later');
      } finally {
        client.release(broken as Error | undefined);
      }
    })().finally(() => {
      this.#compacting = undefined;
    });
  }
}
