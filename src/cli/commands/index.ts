import type { Command } from '../command.js';
import { demoCommand } from './demo.js';
import { migrateCommand } from './migrate.js';
import { relayCommand } from './relay.js';

/** Every `exactly-once <command>`, in the order `--help` lists them. */
export const commands: Command[] = [migrateCommand, relayCommand, demoCommand];
