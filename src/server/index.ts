export { buildServer, type ServerDeps, type TalkbatchServer } from './build-server.js';
export { startServer, type RunningServer, type StartServerOptions } from './start.js';
export {
  BatchFinisher,
  CallbackLog,
  DEFAULT_CALLBACK_RETRY,
  ReportWriter,
  SIGNATURE_HEADER,
  signCallback,
  verifyCallbackSignature,
  type BatchCallbackBody,
  type BatchFinisherOptions,
  type CallbackAttempt,
  type CallbackRetry,
  type CallbackStatus,
} from './callbacks.js';
export { batchView, cancelBatch, type BatchView, type CancelResult } from './batch-ops.js';
export { PayloadTooLargeError, TooManyRowsError, checkCallbackUrl, submitBatch, type BatchInput, type SubmitBatchOptions, type SubmitBatchResult } from './intake.js';
export { TalkbatchMetrics } from './metrics.js';
export { jobPayloadJsonSchema, jobPayloadJsonSchemaText } from './job-schema.js';
export { liveWorkers, type LiveWorker } from './health.js';
