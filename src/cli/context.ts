import { type Config, loadConfig } from '../config/load-config.js';
import { createLogger, type Logger } from '../logger.js';
import type { ParsedFlags } from './command.js';

/**
 * Config (`--config` wins over EXACTLY_ONCE_CONFIG) and the root logger for a CLI command, and the config file read
 * (`undefined`: defaults and environment only).
 */
export function cliContext(
  flags: ParsedFlags['values'],
  options: { logLevel?: string } = {},
): { config: Config; logger: Logger; file: string | undefined } {
  const file = typeof flags.config === 'string' ? flags.config : process.env.EXACTLY_ONCE_CONFIG || undefined;
  const config = loadConfig(file);
  const level = process.env.LOG_LEVEL ?? options.logLevel;
  return { config, logger: createLogger(level ? { level } : {}), file };
}
