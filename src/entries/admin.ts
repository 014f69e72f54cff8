/**
 * `exactly-once/admin`: the admin HTTP API (fastify) — as a plugin for your server, as a server of its own, or with
 * the maintenance scheduler and metrics in one call (`startOperations`). Loads fastify.
 *
 * @module exactly-once/admin
 */

export type { AdminBackend, AdminIdempotency, AdminOptions } from '../admin/backend.js';
export { HttpErrorCode } from '../admin/http-errors.js';
export { exactlyOnceAdmin } from '../admin/plugin.js';
export type { AdminServerHandle, AdminServerOptions } from '../admin/server.js';
export { startAdminServer } from '../admin/server.js';
export type { OperationsHandle, OperationsOptions } from '../admin/start-operations.js';
export { startOperations } from '../admin/start-operations.js';
export type { UiOptions } from '../admin/ui-plugin.js';
export { exactlyOnceUi, UI_SECURITY_HEADERS } from '../admin/ui-plugin.js';
