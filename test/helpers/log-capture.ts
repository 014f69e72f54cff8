import { type Logger, pino } from 'pino';
import { waitFor } from './services.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface LogCapture {
  logger: Logger;
  lines: LogLine[];
  /** Lines whose message matches. */
  matching(msg: string | RegExp): LogLine[];
  /** Wait until more than `after` lines match (default: any), with a deadline. */
  waitFor(msg: string | RegExp, timeoutMs: number, after?: number): Promise<LogLine>;
  /** Called synchronously as each line is written (to snapshot state at the exact moment of a log line). */
  onLine(listener: (line: LogLine) => void): void;
}

/**
 * A real pino logger whose JSON lines a test can read: the relay's own log output is how an operator sees state
 * transitions, so tests wait on it instead of sleeping. Writes are synchronous, so `onLine` runs inside the log call.
 */
export function captureLogs(level = 'debug'): LogCapture {
  const lines: LogLine[] = [];
  const listeners: ((line: LogLine) => void)[] = [];
  const test = (line: LogLine, msg: string | RegExp) =>
    typeof msg === 'string' ? line.msg === msg : msg.test(line.msg);
  const logger = pino(
    { level },
    {
      write(chunk: string) {
        const line = JSON.parse(chunk) as LogLine;
        lines.push(line);
        for (const l of listeners) l(line);
      },
    },
  );
  const matching = (msg: string | RegExp) => lines.filter((l) => test(l, msg));
  return {
    logger,
    lines,
    matching,
    async waitFor(msg, timeoutMs, after = 0) {
      await waitFor(() => matching(msg).length > after, timeoutMs, `log line ${String(msg)}`);
      return matching(msg)[after] as LogLine;
    },
    onLine(listener) {
      listeners.push(listener);
    },
  };
}
