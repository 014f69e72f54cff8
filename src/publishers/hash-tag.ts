/**
 * The part of a key Redis Cluster hashes: the text inside the first `{...}` if non-empty, else the whole key.
 * A marker named `{<tag>}:...` therefore lands in the same slot as the list it guards, even when the list key
 * (e.g. go-redis-work-queue's `jobqueue:low_priority`) has no braces of its own.
 */
export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key.slice(open + 1, close);
  }
  return key;
}

/** The dedup marker of event `id` published to `listKey`. */
export function dedupMarkerKey(listKey: string, id: string): string {
  return `{${hashTag(listKey)}}:eo:dedup:${id}`;
}
