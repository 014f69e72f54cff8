import { encodeCursor } from '../outbox/inspect.js';

/**
 * Most bytes of event JSON one `GET /outbox` page carries. `limit` caps the rows (1000), not their size: a thousand
 * events with large metadata or headers (payloads are listed as previews) would be built, serialised and sent in one
 * piece by the relay process, stalling its event loop (and so its publishing) and the operator's client. A page ends
 * early instead, with a cursor to the rest.
 */
export const OUTBOX_PAGE_MAX_BYTES = 1_048_576;

/**
 * Cut a page at `maxBytes` of JSON (never below one event, so paging always moves on). When cut, the cursor points
 * after the last event kept.
 *
 * @example const { events, nextCursor } = capPage(page.events.map(outboxEventJson), page.nextCursor);
 */
export function capPage<T extends { seq: string }>(
  events: T[],
  nextCursor: string | null,
  maxBytes = OUTBOX_PAGE_MAX_BYTES,
): { events: T[]; nextCursor: string | null } {
  let bytes = 0;
  for (let i = 0; i < events.length; i++) {
    bytes += Buffer.byteLength(JSON.stringify(events[i]));
    if (bytes > maxBytes && i > 0) {
      return { events: events.slice(0, i), nextCursor: encodeCursor((events[i - 1] as T).seq) };
    }
  }
  return { events, nextCursor };
}
