export { BatchService, type BatchServiceOptions, type RetryResult } from './batch-service.js';
export { batchView, cancelBatch, type BatchView, type CancelResult } from './batches.js';
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
  type RowWebhookBody,
} from './finisher.js';
export { PayloadTooLargeError, TooManyRowsError, checkCallbackUrl, submitBatch, type BatchInput, type SubmitBatchOptions, type SubmitBatchResult } from './submit.js';
export { batchCredits, creditReaderFor, type BatchCredits, type CreditReader } from './credits.js';
