export { DidClient, parseDidTime, type DidClientOptions, type FindTalkOptions, type RequestOptions } from './client.js';
export * from './errors.js';
export * from './schemas.js';
export { parseRetryAfterMs } from './retry-after.js';
export { requestResult, type ResultDispatcher, type ResultRequestOptions, type ResultResponse } from './results.js';
export * from './billing.js';
