import type { Command } from '../command.js';
import { cleanupCommand } from './cleanup.js';
import { demoCommand } from './demo.js';
import { migrateCommand } from './migrate.js';
import { outboxCommand } from './outbox.js';
import { relayCommand } from './relay.js';
import { statsCommand } from './stats.js';

/** Every `exactly-once <command>`, in the order `--help` lists them. */
export const commands: Command[] = [
  migrateCommand,
  relayCommand,
  demoCommand,
  statsCommand,
  outboxCommand,
  cleanupCommand,
];
