import type { FastifyReply } from 'fastify';

/** Every error body the server sends: a stable code and one human sentence (never a secret or a stack). */
export interface ErrorBody {
  error: string;
  message: string;
  [extra: string]: unknown;
}

/** Thrown by route handlers to answer with a given status and body; anything else becomes a 500. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly error: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }

  get body(): ErrorBody {
    return { error: this.error, message: this.message, ...this.extra };
  }
}

export function sendError(reply: FastifyReply, statusCode: number, error: string, message: string, extra: Record<string, unknown> = {}): FastifyReply {
  return reply.code(statusCode).type('application/json; charset=utf-8').send({ error, message, ...extra } satisfies ErrorBody);
}

/** Fastify's own errors (body too large, bad JSON, unsupported type) in our shape. */
export function codeForStatus(status: number): string {
  switch (status) {
    case 400:
      return 'bad_request';
    case 401:
      return 'unauthorized';
    case 404:
      return 'not_found';
    case 405:
      return 'method_not_allowed';
    case 413:
      return 'payload_too_large';
    case 415:
      return 'unsupported_media_type';
    case 422:
      return 'unprocessable';
    case 429:
      return 'too_many_requests';
    case 503:
      return 'unavailable';
    default:
      return status >= 500 ? 'internal' : 'error';
  }
}
