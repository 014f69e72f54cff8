import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, rmSync } from 'node:fs';
import path from 'node:path';

/**
 * Cleans up after a soak that died without doing so itself (SIGKILL, a crash, a CI timeout): a detached shell waits
 * for the soak's process to go away, then kills the children the soak recorded and stops its Postgres cluster.
 *
 * A child is killed only if its command line still names the soak's directory (every relay's config file, every
 * consumer's arguments and the redis-server's `--dir` do), so a recycled process id is never hit. Stopped processes
 * (a frozen Redis) get SIGCONT first, so nothing is left stopped either.
 */
const SCRIPT = `
soak=$1; dir=$2; shift 2
while kill -0 "$soak" 2>/dev/null; do sleep 1; done
if [ -f "$dir/pids" ]; then
  for p in $(cat "$dir/pids"); do
    if tr '\\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF "$dir"; then kill -CONT "$p"; kill -KILL "$p"; fi
  done
fi
if [ $# -gt 0 ]; then "$@" >/dev/null 2>&1; fi
rm -rf "$dir"
`;

export interface Watchdog {
  /** Remember a child to kill if the soak dies first. */
  track(pid: number | undefined): void;
  /** The soak cleaned up itself: end the watchdog (and delete the soak's directory). */
  dismiss(): void;
}

/** `dir` is the soak's own directory; `stopCommand` (argv) stops its Postgres cluster, if it has one. */
export function startWatchdog(dir: string, stopCommand: string[] = []): Watchdog {
  const pids = path.join(dir, 'pids');
  const child: ChildProcess = spawn('sh', ['-c', SCRIPT, 'soak-watchdog', String(process.pid), dir, ...stopCommand], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return {
    track(pid) {
      if (pid !== undefined) appendFileSync(pids, `${pid}\n`);
    },
    dismiss() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
