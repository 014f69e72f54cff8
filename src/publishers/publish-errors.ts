import { ReplyError } from 'ioredis';

/**
 * Who is to blame for a Redis error met while publishing: the server's state (an outage: the relay rolls the batch
 * back and backs off, counting no retry) or one event (that event fails: retried with backoff, finally `failed`, while
 * the rest of the batch goes out).
 *
 * The line is drawn on the error's code, the first word of a Redis error reply. Outages are the states that pass with
 * time or an operator's fix and would hit any event alike: the codes below, plus every error that is not a Redis
 * reply at all (connection lost, timeout, ioredis giving up on redirections). Everything else Redis answers is
 * deterministic for the keys and values it was given — WRONGTYPE, CROSSSLOT — and so belongs to the event(s) that
 * named them.
 */
const OUTAGE_CODES = new Set([
  'LOADING', // restarting, reading its dataset
  'BUSY', // a script or module command is running past its time limit
  'OOM', // maxmemory reached with noeviction: the server is full (a too-large job is caught before sending)
  'READONLY', // we reached a replica (failover in progress)
  'MASTERDOWN',
  'NOREPLICAS', // min-replicas-to-write not met
  'MISCONF', // persistence failing with stop-writes-on-bgsave-error
  'CLUSTERDOWN',
  'TRYAGAIN', // resharding; ioredis retries MOVED/ASK/TRYAGAIN itself, what reaches us has outlived that
  'MOVED',
  'ASK',
  'NOAUTH',
  'WRONGPASS',
]);

/** The code of a Redis error reply (`WRONGTYPE Operation against ...` -> `WRONGTYPE`). */
export function errorCode(message: string): string {
  const space = message.indexOf(' ');
  return space < 0 ? message : message.slice(0, space);
}

/**
 * Whether an error reply text (a job's reply from the script, or a rejected call's message) is the server's state
 * rather than the event's doing. NOPERM is both: a key the relay's ACL user may not touch is the event's
 * (it named the key), a command it may not run is the operator's (every event would fail alike). Redis says which
 * only in the message ("...access one of the keys...").
 */
export function isOutageReply(message: string): boolean {
  const code = errorCode(message);
  if (code === 'NOPERM') return !/\bkeys?\b/i.test(message);
  return OUTAGE_CODES.has(code);
}

/** Whether a rejected script call is an outage (else the events of that call, one of them at least, are to blame). */
export function isOutage(err: unknown): boolean {
  const reply = replyText(err);
  return reply === undefined || isOutageReply(reply);
}

/**
 * A call refused because one argument exceeded the server's proto-max-bulk-len: Redis answers this and then closes
 * the connection, so the call cannot be split and retried on the spot.
 */
export function isBulkTooLarge(err: unknown): boolean {
  return replyText(err)?.startsWith('ERR Protocol error: invalid bulk length') === true;
}

/** The text of a Redis error reply; `undefined` for any other error (ioredis types ReplyError loosely). */
export function replyText(err: unknown): string | undefined {
  return err instanceof ReplyError ? String((err as Error).message) : undefined;
}
