// Replay of failed (dead) events, shared by the Events, Held and Dead screens: confirm, POST /outbox/retry, report.
import { api } from '../api.js';
import { confirmAction, notice } from '../dom.js';

/**
 * `target` is `{ ids: [...] }` or `{ error: "<last_error>" }` (a whole group). Resolves true when the server took it.
 * The server decides everything (auth, read-only, which ids are still failed); the page only reports what it said.
 */
export async function replay(target, description, ctx) {
  const ok = await confirmAction(
    'Replay dead events?',
    `${description} will be set back to pending and published by the relay.`,
    'Replay',
  );
  if (!ok) return false;
  try {
    const result = await api('POST', '/outbox/retry', { body: target });
    const skipped = result?.not_retried?.length ?? 0;
    notice(
      'ok',
      `Replayed ${result?.retried ?? 0} event(s)${skipped ? `; ${skipped} were no longer failed` : ''}. The relay publishes them now.`,
    );
    return true;
  } catch (err) {
    ctx.fail(err);
    return false;
  }
}
