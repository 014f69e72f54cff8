import type { Command } from '../command.js';

/** A command's name and summary, with its module loaded only when it runs (an operator command need not load fastify). */
export interface CommandEntry {
  name: string;
  summary: string;
  load(): Promise<Command>;
}

/** Every `exactly-once <command>`, in the order `--help` lists them. */
export const commands: CommandEntry[] = [
  {
    name: 'migrate',
    summary: 'apply, undo or list database migrations',
    load: async () => (await import('./migrate.js')).migrateCommand,
  },
  {
    name: 'relay',
    summary: 'run the outbox relay daemon',
    load: async () => (await import('./relay.js')).relayCommand,
  },
  {
    name: 'worker',
    summary: 'consume the queues the relay fills, each job through your handler exactly once',
    load: async () => (await import('./worker.js')).workerCommand,
  },
  {
    name: 'demo',
    summary: 'write orders and events, relay them, consume them idempotently, and show what flowed',
    load: async () => (await import('./demo.js')).demoCommand,
  },
  {
    name: 'stats',
    summary: 'deduplication statistics of a queue and the outbox backlog',
    load: async () => (await import('./stats.js')).statsCommand,
  },
  {
    name: 'outbox',
    summary: 'list outbox events, replay failed ones',
    load: async () => (await import('./outbox.js')).outboxCommand,
  },
  {
    name: 'cleanup',
    summary: 'delete expired idempotency keys and old outbox events now',
    load: async () => (await import('./cleanup.js')).cleanupCommand,
  },
];
