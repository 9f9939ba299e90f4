import { describe, expect, it } from 'vitest';
import {
  DidApiError,
  DidAuthError,
  DidBadRequestError,
  DidConflictError,
  DidModerationError,
  DidNotFoundError,
  DidPaymentRequiredError,
  DidRateLimitError,
  DidServerError,
} from '../../src/did/index.js';

describe('DidApiError.fromResponse', () => {
  it.each([
    [400, DidBadRequestError],
    [401, DidAuthError],
    [402, DidPaymentRequiredError],
    [403, DidAuthError],
    [404, DidNotFoundError],
    [409, DidConflictError],
    [451, DidModerationError],
    [429, DidRateLimitError],
    [500, DidServerError],
    [503, DidServerError],
    [504, DidServerError],
  ])('maps %i to its class', (status, Class) => {
    const error = DidApiError.fromResponse(status, JSON.stringify({ kind: 'SomeKind', description: 'some text' }), {});
    expect(error).toBeInstanceOf(Class);
    expect(error.status).toBe(status);
    expect(error.kind).toBe('SomeKind');
    expect(error.description).toBe('some text');
  });

  it('keeps ValidationError details', () => {
    const body = { kind: 'ValidationError', description: 'Invalid', details: { 'body.script': { message: "'script' is required" } } };
    const error = DidApiError.fromResponse(400, JSON.stringify(body), {});
    expect(error.details).toEqual(body.details);
  });

  it('reads the API gateway 504 {"message"} body', () => {
    const error = DidApiError.fromResponse(504, '{"message":"Endpoint request timed out"}', {});
    expect(error).toBeInstanceOf(DidServerError);
    expect(error.kind).toBe('GatewayTimeout');
    expect(error.description).toBe('Endpoint request timed out');
  });

  it('reads the gateway 403 for a malformed Authorization header', () => {
    const error = DidApiError.fromResponse(403, '{"message":"Invalid key=value pair (missing equal-sign) in Authorization header"}', {});
    expect(error).toBeInstanceOf(DidAuthError);
    expect(error.kind).toBe('Http403');
    expect(error.description).toContain('Authorization header');
  });

  it('copes with non-JSON and empty bodies', () => {
    const html = DidApiError.fromResponse(502, '<html><body>Bad   Gateway</body></html>', {});
    expect(html).toBeInstanceOf(DidServerError);
    expect(html.description).toBe('<html><body>Bad Gateway</body></html>');
    expect(DidApiError.fromResponse(500, '', {}).description).toBe('(no body)');
  });

  it('caps very long descriptions', () => {
    const error = DidApiError.fromResponse(500, 'x'.repeat(5000), {});
    expect(error.description.length).toBeLessThanOrEqual(501);
  });

  it('carries the Retry-After hint', () => {
    const error = DidApiError.fromResponse(429, '{}', { 'retry-after': '7' });
    expect(error).toBeInstanceOf(DidRateLimitError);
    expect(error.retryAfterMs).toBe(7000);
  });
});
