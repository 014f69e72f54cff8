const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * A cron expression that fires every `intervalMs` (config `cleanup_interval`), at the granularity pg-boss cron has:
 * whole minutes. Anything under a minute runs every minute; intervals are rounded to the nearest whole minute,
 * hour or day (a month at most). A step that does not divide its unit (`*\/7` minutes) restarts at the top of the hour, as cron does.
 *
 * @example intervalToCron(3_600_000) // '0 * * * *'; intervalToCron(86_400_000) // '0 0 * * *'
 */
export function intervalToCron(intervalMs: number): string {
  const minutes = Math.round(intervalMs / MINUTE);
  if (!(minutes > 1)) return '* * * * *';
  if (minutes < 60) return `*/${minutes} * * * *`;
  const hours = Math.round(intervalMs / HOUR);
  if (hours <= 1) return '0 * * * *';
  if (hours < 24) return `0 */${hours} * * *`;
  const days = Math.round(intervalMs / DAY);
  if (days <= 1) return '0 0 * * *';
  return days <= 28 ? `0 0 */${days} * *` : '0 0 1 * *';
}
