export { BatchService, type BatchServiceOptions, type RetryResult } from './batch-service.js';
export { ApprovalRefusedError, approveBatch, batchView, cancelBatch, heldSummary, type ApproveResult, type BatchView, type CancelResult, type HeldSummary } from './batches.js';
export { SampleChooser, chooseSample, sampleCandidateOf, sampleOf, voiceOf, type SampleCandidate, type SamplePick } from './sample.js';
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
export { parseAge, pruneRenderCache, renderCacheStats, renderCacheStore, type PruneOptions, type PruneResult, type RenderCacheStats } from './render-cache.js';
export { batchCredits, creditReaderFor, type BatchCredits, type CreditReader } from './credits.js';
