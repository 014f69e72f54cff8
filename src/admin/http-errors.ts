import {
  AdminForeignOriginError,
  AdminHostNotAllowedError,
  AdminReadOnlyError,
  AdminUnauthorizedError,
  CircuitOpenError,
  DeadLetterNotFoundError,
  ExactlyOnceError,
  FeatureDisabledError,
  IdempotencyKeyExistsError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyNotFoundError,
  IdempotencyStorageError,
  InvalidParameterError,
  NotMigratedError,
  OutboxEventNotFoundError,
  PgErrorCode,
  PublishUnavailableError,
  ServiceUnreachableError,
  sqlState,
} from '../errors.js';

/**
 * Codes the admin API answers with besides the library's own (`EO_INVALID_PARAMETER`, `EO_FEATURE_DISABLED`, ...):
 * protocol-level failures that no library function throws. Stable, never reused.
 */
export const HttpErrorCode = {
  notFound: 'EO_HTTP_NOT_FOUND',
  methodNotAllowed: 'EO_HTTP_METHOD_NOT_ALLOWED',
  invalidJson: 'EO_HTTP_INVALID_JSON',
  bodyTooLarge: 'EO_HTTP_BODY_TOO_LARGE',
  unsupportedMediaType: 'EO_HTTP_UNSUPPORTED_MEDIA_TYPE',
  badRequest: 'EO_HTTP_BAD_REQUEST',
  unavailable: 'EO_HTTP_UNAVAILABLE',
  notReady: 'EO_HTTP_NOT_READY',
  internal: 'EO_HTTP_INTERNAL',
} as const;

/** What every error response carries: `{ "error": { "code", "message" } }`, plus `field` for a bad input. */
export interface HttpErrorBody {
  error: { code: string; message: string; field?: string };
}

export interface HttpError {
  status: number;
  body: HttpErrorBody;
}

/** The HTTP names of the idempotency service's fields, so a 400 names what the client actually sent. */
const SERVICE_FIELD_NAMES: Record<string, string> = { queueName: 'queue', tenantId: 'tenant', keyId: 'key' };

/**
 * Map anything thrown while serving a request to a status and a JSON body. Never leaks a stack trace or a driver
 * message for a 5xx: those are logged server-side and answered with a generic message.
 *
 * @example const { status, body } = toHttpError(err); reply.status(status).send(body);
 */
export function toHttpError(err: unknown, fieldNames: Record<string, string> = SERVICE_FIELD_NAMES): HttpError {
  if (err instanceof InvalidParameterError) return fail(400, err.code, err.message, err.field);
  if (err instanceof IdempotencyKeyInvalidError) {
    const field = fieldNames[err.field] ?? err.field;
    return fail(400, err.code, err.message.replace(`${err.field}:`, `${field}:`), field);
  }
  if (err instanceof AdminUnauthorizedError) return fail(401, err.code, err.message);
  if (
    err instanceof AdminReadOnlyError ||
    err instanceof AdminForeignOriginError ||
    err instanceof AdminHostNotAllowedError
  ) {
    return fail(403, err.code, err.message);
  }
  if (
    err instanceof IdempotencyKeyNotFoundError ||
    err instanceof OutboxEventNotFoundError ||
    err instanceof DeadLetterNotFoundError
  ) {
    return fail(404, err.code, err.message);
  }
  if (err instanceof IdempotencyKeyExistsError) return fail(409, err.code, err.message);
  if (err instanceof FeatureDisabledError) return fail(503, err.code, err.message);
  if (err instanceof NotMigratedError) return fail(503, err.code, err.message);
  // A path that does not wrap its driver errors (yet): still the operator's cue to migrate, never a 500. Matched on
  // SQLSTATE anywhere in the cause chain, never on message text.
  if (hasSqlState(err, PgErrorCode.undefinedTable)) {
    return fail(503, 'EO_NOT_MIGRATED', 'a table this endpoint needs does not exist; run `exactly-once migrate` first');
  }
  if (err instanceof ServiceUnreachableError) return fail(503, err.code, `${err.service} is unreachable; retry later`);
  // The relay's publishing is paused (breaker open) or Redis did not take the batch: nothing was marked, retry later.
  if (err instanceof CircuitOpenError) return fail(503, err.code, err.message);
  if (err instanceof PublishUnavailableError) return fail(503, err.code, 'Redis did not take the batch; retry later');
  if (err instanceof IdempotencyStorageError) {
    return fail(503, err.code, `storage unavailable during ${err.operation}; retry later`);
  }
  const fastify = fastifyError(err);
  if (fastify) return fastify;
  if (err instanceof ExactlyOnceError) return fail(500, err.code, 'internal error; see the server log');
  if (isConnectionError(err))
    return fail(503, HttpErrorCode.unavailable, 'a backing service is unreachable; retry later');
  return fail(500, HttpErrorCode.internal, 'internal error; see the server log');
}

function hasSqlState(err: unknown, code: string): boolean {
  let e = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (sqlState(e) === code) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

function fastifyError(err: unknown): HttpError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, statusCode, message } = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (typeof code !== 'string' || !code.startsWith('FST_') || typeof statusCode !== 'number') return undefined;
  if (statusCode < 400 || statusCode >= 500) return undefined;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return fail(413, HttpErrorCode.bodyTooLarge, 'request body is larger than admin.body_limit');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return fail(415, HttpErrorCode.unsupportedMediaType, 'send JSON (Content-Type: application/json)');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return fail(400, HttpErrorCode.invalidJson, `body: ${String(message)}`, 'body');
    default:
      return fail(statusCode, HttpErrorCode.badRequest, String(message));
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P03']);

function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (CONNECTION_CODES.has(code) || code.startsWith('08'))) return true;
  const message = (err as { message?: unknown } | null)?.message;
  // ioredis with maxRetriesPerRequest / enableOfflineQueue off rejects with these, without a code.
  return (
    typeof message === 'string' && /Connection is closed|Stream isn't writeable|connect ECONNREFUSED/.test(message)
  );
}

function fail(status: number, code: string, message: string, field?: string): HttpError {
  return { status, body: { error: field === undefined ? { code, message } : { code, message, field } } };
}
