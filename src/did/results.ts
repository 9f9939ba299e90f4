import { request, type Dispatcher } from 'undici';

/** A connection pool to hand to `requestResult` (tests pass their own). */
export type ResultDispatcher = Dispatcher;
export type ResultResponse = Dispatcher.ResponseData<unknown>;

export interface ResultRequestOptions {
  headers: Record<string, string>;
  timeoutMs: number;
  signal?: AbortSignal;
  dispatcher?: ResultDispatcher;
}

/**
 * GET of a talk's `result_url` (D-ID's presigned storage link). It lives here so that every HTTP request to D-ID,
 * its API and its result links, goes through `did/`; the downloader decides what the answer means.
 */
export function requestResult(url: string, options: ResultRequestOptions): Promise<ResultResponse> {
  return request(url, {
    method: 'GET',
    headers: options.headers,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
