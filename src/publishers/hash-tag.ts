/**
 * Redis Cluster key placement, computed exactly as Redis does (cluster.c `keyHashSlot`), so that every key one script
 * touches lands in one slot. A mismatch here is not cosmetic: Redis refuses the whole script with CROSSSLOT.
 */

const SLOTS = 16384;

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with. */
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ byte) & 0xff] as number);
  return crc;
}

/**
 * The part of a key Redis Cluster hashes: the text between the first `{` and the first `}` after it, when that text
 * is non-empty; otherwise the whole key. So `{a}{b}` hashes `a`, `a{b}c` hashes `b`, `{{a}}` hashes `{a`, while
 * `x}y`, `{}abc`, `{` and `}` hash the whole key. (`{` and `}` are ASCII, so searching the JS string finds the same
 * positions Redis finds in the UTF-8 bytes.)
 *
 * @example hashTag('{orders}:jobs') // 'orders'
 */
export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key.slice(open + 1, close);
  }
  return key;
}

/**
 * The cluster slot of a key, as `CLUSTER KEYSLOT` answers (ioredis sends keys as UTF-8, so we hash those bytes).
 *
 * @example keySlot('jobqueue:low_priority') // 0..16383
 */
export function keySlot(key: string): number {
  return crc16(Buffer.from(hashTag(key), 'utf8')) % SLOTS;
}

const slotTags = new Map<number, string>();

/**
 * A short tag that hashes to `slot`: the first of `eo-slot-<slot>-0`, `-1`, ... whose CRC16 lands there (about 16k
 * tries on average, a few milliseconds, once per slot). Deterministic, so every relay names a mark alike.
 */
function slotTag(slot: number): string {
  let tag = slotTags.get(slot);
  if (tag === undefined) {
    for (let n = 0; ; n++) {
      const candidate = `eo-slot-${slot}-${n}`;
      if (crc16(Buffer.from(candidate, 'latin1')) % SLOTS === slot) {
        tag = candidate;
        break;
      }
    }
    slotTags.set(slot, tag);
  }
  return tag;
}

/** Every high-water mark's name contains this; the allow-list reserves it (src/outbox/allowed-queues.ts). */
export const MARK_INFIX = ':eo:hwm:';

/**
 * The high-water mark of one outbox lane in one destination (src/publishers/lua/publish-marks.lua); always in the
 * destination's slot, whatever the destination key is, so the script that writes the events writes the mark too.
 *
 * Normally `{<tag>}:eo:hwm:<outbox id>:<lane>`, `<tag>` being the destination's effective hash-tag content (the whole
 * key when it has no tag), so Redis reads back the same tag. That fails when the tag is empty or holds a `}` (`x}y`,
 * `{}abc`: Redis would hash `x`, or the whole mark): those marks use `{eo-slot-<slot>-<n>}`, a tag chosen to hash to
 * the destination's slot, and end with the destination key itself, so two such destinations in one slot never share
 * a mark. The outbox id keeps two databases' outboxes that feed one list apart.
 *
 * @example markKey('jobqueue:low_priority', '3f2a...', 7) // '{jobqueue:low_priority}:eo:hwm:3f2a...:7'
 */
export function markKey(destination: string, outboxId: string, lane: number): string {
  const tag = hashTag(destination);
  const braced = tag.length > 0 && !tag.includes('}') && tag === destination;
  if (braced) return `{${tag}}${MARK_INFIX}${outboxId}:${lane}`;
  if (tag.length > 0 && !tag.includes('}')) return `{${tag}}${MARK_INFIX}${outboxId}:${lane}:${destination}`;
  return `{${slotTag(keySlot(destination))}}${MARK_INFIX}${outboxId}:${lane}:${destination}`;
}
