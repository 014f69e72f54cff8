/**
 * `exactly-once/relay`: publishing the outbox to Redis by hand — the relay, the publishers, the Redis client factory.
 * Loads ioredis. Most applications use the Manager (`exactly-once/manager`) or the `exactly-once relay` daemon instead.
 *
 * @module exactly-once/relay
 */

export type { RelayHealth } from '../outbox/circuit-breaker.js';
export type { OutboxInspector } from '../outbox/inspector.js';
export { createOutboxInspector, postgresOutboxInspector } from '../outbox/inspector.js';
export type { RelayOptions } from '../outbox/postgres/relay.js';
export { Relay } from '../outbox/postgres/relay.js';
export type { RedisOutboxRelayOptions } from '../outbox/redis/relay.js';
export { RedisOutboxRelay } from '../outbox/redis/relay.js';
export type { OutboxRelay, RelayMetrics } from '../outbox/relay-core.js';
export type { PublishSummary } from '../outbox/summary.js';
export type { ClaimedEvent, Publisher, PublishOptions, PublishOutcome } from '../outbox/types.js';
export type { PublisherDeps } from '../publishers/create-publisher.js';
export { createPublisher } from '../publishers/create-publisher.js';
export type { DestinationKind } from '../publishers/destination-kind.js';
export { DESTINATION_HEADER } from '../publishers/destination-kind.js';
export type { Job } from '../publishers/job.js';
export type { PgBossPublisherOptions, PgBossQueueOptions } from '../publishers/pg-boss.js';
export { PgBossPublisher } from '../publishers/pg-boss.js';
export type { RedisListPublisherOptions } from '../publishers/redis-list.js';
export { RedisListPublisher } from '../publishers/redis-list.js';
export type { RedisStreamPublisherOptions } from '../publishers/redis-stream.js';
export { RedisStreamPublisher, STREAM_FIELDS } from '../publishers/redis-stream.js';
export type { RedisClient, RedisClientOptions } from '../redis.js';
export { createRedisClient } from '../redis.js';
