/**
 * How listings carry payloads: a bounded preview and the size, never the whole payload (one 10 MB event must not make
 * a page of fifty events cost 10 MB to read, serialise and send). The whole payload is read when one event is asked
 * for (`OutboxInspector.get`, `GET /outbox/events/:id`).
 *
 * Contract, for every outbox storage: `list({ payload: 'preview' })` returns events whose `payload` is `undefined` and
 * whose `payloadPreview` is set; `text` is the start of the payload's JSON text as the storage holds it (Postgres
 * prints jsonb with a space after `:` and `,`), cut to at most `PAYLOAD_PREVIEW_BYTES` UTF-8 bytes at a character
 * boundary; `bytes` is the size of the whole JSON text in UTF-8 bytes; `truncated` says whether `text` is all of it.
 */
export interface PayloadPreview {
  text: string;
  bytes: number;
  truncated: boolean;
}

/** Bytes of a payload's JSON text a listing carries per event. */
export const PAYLOAD_PREVIEW_BYTES = 1024;

/**
 * The preview of a payload's JSON text (all of it, or a longer prefix of it); `bytes` defaults to the text's size.
 *
 * @example payloadPreview(JSON.stringify(payload)); // { text, bytes, truncated }
 */
export function payloadPreview(text: string, bytes: number = Buffer.byteLength(text)): PayloadPreview {
  const cut = utf8Prefix(text, PAYLOAD_PREVIEW_BYTES);
  return { text: cut, bytes, truncated: Buffer.byteLength(cut) < bytes };
}

/** The longest prefix of `text` of at most `max` UTF-8 bytes that ends on a whole character. */
export function utf8Prefix(text: string, max: number): string {
  if (text.length * 3 <= max) return text;
  const buf = Buffer.from(text.slice(0, max), 'utf8');
  if (buf.length <= max) return buf.toString('utf8');
  let end = max;
  // Back off to the start of the character the limit falls in (continuation bytes are 10xxxxxx).
  while (end > 0 && ((buf[end] as number) & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString('utf8');
}
