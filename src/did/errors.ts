import { AppError } from '../shared/errors.js';
import { ErrorBody } from './schemas.js';
import { parseRetryAfterMs } from './retry-after.js';

type Headers = Record<string, string | string[] | undefined>;

/** A non-2xx answer from the D-ID API. Built only by `DidApiError.fromResponse`. */
export class DidApiError extends AppError {
  readonly code: string = 'DID_API_ERROR';
  /** D-ID's `kind` (e.g. ValidationError), or the gateway's label when the body was not D-ID's. */
  readonly kind: string;
  readonly description: string;
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly status: number,
    kind: string,
    description: string,
    readonly details: unknown,
    headers: Headers,
  ) {
    super(`D-ID ${status} ${kind}: ${description}`);
    this.kind = kind;
    this.description = description;
    this.retryAfterMs = parseRetryAfterMs(headers);
  }

  /** The one place where an HTTP status becomes an error class. */
  static fromResponse(status: number, bodyText: string, headers: Headers): DidApiError {
    const { kind, description, details } = describeBody(status, bodyText);
    const Class = classFor(status);
    return new Class(status, kind, description, details, headers);
  }
}

/** 400/422: D-ID rejected the request itself; sending it again cannot help. */
export class DidBadRequestError extends DidApiError {
  override readonly code = 'DID_BAD_REQUEST';
}
/** 401/403: the key is wrong or revoked. Stops the worker, burns no attempt; the processor fails only the row on a 403 `PermissionError` (a plan-gated feature). */
export class DidAuthError extends DidApiError {
  override readonly code = 'DID_AUTH';
}
/** 402: out of credits. The queue pauses until credits return; no row fails. */
export class DidPaymentRequiredError extends DidApiError {
  override readonly code = 'DID_NO_CREDITS';
}
export class DidNotFoundError extends DidApiError {
  override readonly code = 'DID_NOT_FOUND';
}
/** 409 on DELETE while the talk is still rendering. */
export class DidConflictError extends DidApiError {
  override readonly code = 'DID_CONFLICT';
}
/** 451: content moderation. Final for that row. */
export class DidModerationError extends DidApiError {
  override readonly code = 'DID_MODERATION';
}
export class DidRateLimitError extends DidApiError {
  override readonly code = 'DID_RATE_LIMITED';
}
/** 5xx, including the API gateway's 504 `{"message":"Endpoint request timed out"}`. */
export class DidServerError extends DidApiError {
  override readonly code = 'DID_SERVER_ERROR';
}

/** No HTTP answer at all: refused, reset, DNS, or our own timeout. The request may or may not have arrived. */
export class DidConnectionError extends AppError {
  readonly code: string = 'DID_CONNECTION';
}
export class DidTimeoutError extends DidConnectionError {
  override readonly code = 'DID_TIMEOUT';
}

/** A 2xx whose body is not what D-ID documents. */
export class DidProtocolError extends AppError {
  readonly code = 'DID_PROTOCOL';
}

function classFor(status: number): typeof DidApiError {
  if (status === 400 || status === 422 || status === 413) return DidBadRequestError;
  if (status === 401 || status === 403) return DidAuthError;
  if (status === 402) return DidPaymentRequiredError;
  if (status === 404) return DidNotFoundError;
  if (status === 409) return DidConflictError;
  if (status === 451) return DidModerationError;
  if (status === 429) return DidRateLimitError;
  if (status >= 500) return DidServerError;
  return DidApiError;
}

const MAX_DESCRIPTION = 500;

function describeBody(status: number, bodyText: string): { kind: string; description: string; details: unknown } {
  let json: unknown;
  try {
    json = JSON.parse(bodyText);
  } catch {
    json = undefined;
  }
  const parsed = ErrorBody.safeParse(json);
  if (parsed.success) {
    const body = parsed.data;
    if (typeof body.kind === 'string') {
      const description = typeof body.description === 'string' ? body.description : '';
      return { kind: body.kind, description: truncate(description), details: body.details };
    }
    const message = typeof body.message === 'string' ? body.message : '';
    return { kind: status === 504 ? 'GatewayTimeout' : `Http${status}`, description: truncate(message), details: undefined };
  }
  const text = bodyText.replace(/\s+/g, ' ').trim();
  return { kind: `Http${status}`, description: truncate(text === '' ? '(no body)' : text), details: undefined };
}

function truncate(text: string): string {
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION)}…` : text;
}
