/**
 * Counts of one batch or of a drain. `duplicates` were already in Redis (an earlier attempt of the batch wrote them and
 * died before its COMMIT) and count as published; `held` stayed behind (parked behind a failed event of their
 * aggregate, or cut from the batch at a switch of destination slot or kind).
 */
export interface PublishSummary {
  claimed: number;
  published: number;
  duplicates: number;
  retried: number;
  failed: number;
  held: number;
}

export const ZERO_SUMMARY: Readonly<PublishSummary> = Object.freeze({
  claimed: 0,
  published: 0,
  duplicates: 0,
  retried: 0,
  failed: 0,
  held: 0,
});

/** Add `batch` into `total`, in place. */
export function addSummary(total: PublishSummary, batch: PublishSummary): void {
  for (const k of Object.keys(total) as (keyof PublishSummary)[]) total[k] += batch[k];
}
