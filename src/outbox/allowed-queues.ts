/**
 * The destination allow-list: which Redis keys an event may name in `queue`. Without it an event could push into
 * any key the relay can reach — another application's list, or the relay's own high-water marks.
 *
 * An event with no `queue` goes to the list `queue_pattern` names and is always allowed. An event that names a queue
 * must match one of
 * - the lists `queue_pattern` produces (`{priority}` as `high` and as `low`), and
 * - the patterns in `outbox.allowed_queues`, where `*` matches any run of characters (`:` included) and everything
 *   else is literal,
 * and must never be one of the relay's own keys, whatever the patterns say: any name containing `:eo:hwm:` (a
 * high-water mark, see `markKey` in src/publishers/hash-tag.ts) or `:eo:dedup:` (the dedup markers of earlier
 * versions) is reserved.
 *
 * The writer checks at `storeInOutbox` time; the relay checks again with its own config before publishing, because a
 * row can also be inserted by plain SQL.
 */

/** The part of `config.outbox` the allow-list depends on; pass `config.outbox` itself. */
export interface DestinationOptions {
  /** @defaultValue "jobqueue:{priority}_priority" (as `outbox.queue_pattern`) */
  queuePattern?: string;
  /** Extra patterns, `*` as a wildcard. @defaultValue [] (as `outbox.allowed_queues`) */
  allowedQueues?: readonly string[];
  /** The kind of key `queue_pattern` names (see `kindReason`). @defaultValue "list" (as `outbox.publisher`) */
  publisher?: 'list' | 'stream' | 'pg-boss';
}

const DEFAULT_QUEUE_PATTERN = 'jobqueue:{priority}_priority';
/** Every high-water mark's name contains the first (`markKey` in src/publishers/hash-tag.ts); earlier versions' dedup markers the second. */
const RESERVED_INFIXES = [':eo:hwm:', ':eo:dedup:'];

/** A compiled allow-list. `reason(queue)` is `undefined` when the queue is allowed, else why it is not. */
export interface DestinationPolicy {
  allows(queue: string | null | undefined): boolean;
  reason(queue: string): string | undefined;
  /**
   * Why an event whose `destination` header asks for `kind` may not go where its `queue` sends it, else `undefined`.
   * The keys `queue_pattern` names are of the publisher's kind: a stream written where the default list is momentarily
   * absent (workers drained it) would make every ordinary event fail `WRONGTYPE` from then on, and a list in the
   * default stream likewise. So the other kind needs a `queue` of its own.
   */
  kindReason(kind: string | undefined, queue: string | null | undefined): string | undefined;
  /** The effective patterns, for messages and docs. */
  readonly patterns: readonly string[];
}

/**
 * Compile the allow-list of `options` (typically `config.outbox`).
 *
 * @example
 * const policy = destinationPolicy({ allowedQueues: ['orders:*'] });
 * policy.allows('orders:eu'); // true
 * policy.allows('jobqueue:low_priority'); // true: the default queue_pattern's list
 * policy.allows('sessions'); // false
 */
export function destinationPolicy(options: DestinationOptions = {}): DestinationPolicy {
  const queuePattern = options.queuePattern ?? DEFAULT_QUEUE_PATTERN;
  // The default lists are exact names (a `*` in queue_pattern is literal); allowed_queues entries are globs.
  const defaults = new Set(['high', 'low'].map((p) => queuePattern.replaceAll('{priority}', p)));
  const globs = [...(options.allowedQueues ?? [])];
  const patterns = [...defaults, ...globs];
  const reason = (queue: string): string | undefined => {
    const infix = RESERVED_INFIXES.find((i) => queue.includes(i));
    if (infix !== undefined) {
      return `${JSON.stringify(queue)} is reserved: names containing "${infix}" are the relay's own keys, never a destination`;
    }
    if (defaults.has(queue) || globs.some((g) => globMatch(g, queue))) return undefined;
    return (
      `${JSON.stringify(queue)} is not an allowed destination (allowed: ${patterns.map((p) => JSON.stringify(p)).join(', ')}); ` +
      'add a pattern to exactly_once.outbox.allowed_queues and pass config.outbox to storeInOutbox'
    );
  };
  const own = options.publisher ?? 'list';
  const kindReason = (kind: string | undefined, queue: string | null | undefined): string | undefined => {
    if (kind === undefined || kind === own || own === 'pg-boss') return undefined;
    const where =
      queue === null || queue === undefined
        ? 'without a queue the event goes to'
        : defaults.has(queue)
          ? `${JSON.stringify(queue)} is one of`
          : undefined;
    if (where === undefined) return undefined;
    return (
      `"${kind}" needs a queue of its own: ${where} outbox.queue_pattern's keys, which are ${own}s ` +
      `(outbox.publisher: ${own}); a ${kind} there would make every ordinary event fail with WRONGTYPE`
    );
  };
  return {
    patterns,
    reason,
    kindReason,
    allows: (queue) => queue === null || queue === undefined || reason(queue) === undefined,
  };
}

const compiled = new WeakMap<object, DestinationPolicy>();

/**
 * Whether an event may be published to `queue` under `outbox` (typically `config.outbox`). `null`/`undefined` (the
 * default list) is always allowed. The relay calls this before publishing a claimed row; a row that fails goes to
 * `failed` with `destinationPolicy(outbox).reason(queue)` as its error, and is never published.
 *
 * @example if (!isAllowedDestination(event.queue, config.outbox)) markFailed(event, 'queue not allowed');
 */
export function isAllowedDestination(queue: string | null | undefined, outbox: DestinationOptions): boolean {
  return policyFor(outbox).allows(queue);
}

/**
 * The compiled policy of an options object. A frozen one (`config.outbox` from `loadConfig`) compiles once; a
 * plain object is compiled on each call, so mutating it later cannot leave a stale allow-list behind.
 */
export function policyFor(outbox: DestinationOptions | undefined): DestinationPolicy {
  if (outbox === undefined) return defaultPolicy;
  const frozen = Object.isFrozen(outbox) && (!outbox.allowedQueues || Object.isFrozen(outbox.allowedQueues));
  if (!frozen) return destinationPolicy(outbox);
  let policy = compiled.get(outbox);
  if (!policy) {
    policy = destinationPolicy(outbox);
    compiled.set(outbox, policy);
  }
  return policy;
}

const defaultPolicy = destinationPolicy();

/**
 * `*` matches any run of characters; nothing else is special. Iterative with one backtrack point, so the cost is
 * O(pattern × name) at worst — no regular expression whose backtracking a crafted name could blow up.
 */
export function globMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern[p] !== '*' && pattern[p] === name[n]) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}
