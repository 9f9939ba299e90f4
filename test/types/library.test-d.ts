/*
 * Type tests of the public library API. Checked by `tsc -p tsconfig.json` (npm run typecheck), which
 * includes test/, and runnable with `vitest --typecheck.only --typecheck.include 'test/types/**'`.
 */
import { describe, expectTypeOf, it } from 'vitest';
import * as talkbatch from '../../src/index.js';
import {
  createTalkbatch,
  verifyCallbackSignature,
  type ApproveResult,
  type BatchCounts,
  type BatchView,
  type CancelResult,
  type Config,
  type JobPayload,
  type ManifestIssue,
  type ResultRecord,
  type RowResult,
  type SamplePick,
  type SubmitBatchResult,
  type Talkbatch,
  type TalkbatchOptions,
  type TalkWorker,
} from '../../src/index.js';

describe('createTalkbatch', () => {
  it('takes a redisUrl and any Config field, and resolves to a client', () => {
    expectTypeOf(createTalkbatch).parameter(0).toEqualTypeOf<TalkbatchOptions>();
    expectTypeOf(createTalkbatch).returns.resolves.toEqualTypeOf<Talkbatch>();
    expectTypeOf<{ redisUrl: string }>().toExtend<TalkbatchOptions>();
    expectTypeOf<{ redisUrl: string; queueName: string; concurrency: number; apiKeys: string[] }>().toExtend<TalkbatchOptions>();
    // redisUrl is required, and options keep their Config types.
    expectTypeOf<{ queueName: string }>().not.toExtend<TalkbatchOptions>();
    expectTypeOf<{ redisUrl: string; concurrency: string }>().not.toExtend<TalkbatchOptions>();
    expectTypeOf<Talkbatch['config']>().toEqualTypeOf<Config>();
  });

  it('enqueues rows, a manifest path or a stream', () => {
    type Enqueue = Talkbatch['enqueueBatch'];
    expectTypeOf<Enqueue>().toBeCallableWith({ rows: [{ id: 'a', image_url: 'https://x/a.png' }] });
    expectTypeOf<Enqueue>().toBeCallableWith({ manifestPath: 'people.csv' }, { batchId: 'b', template: 'Hi {{first_name}}', maxTalks: 10 });
    expectTypeOf<Enqueue>().toBeCallableWith({ stream: (async function* () { yield 'id,image_url\n'; })() }, { format: 'csv' });
    expectTypeOf<Enqueue>().returns.resolves.toEqualTypeOf<SubmitBatchResult>();
    expectTypeOf<SubmitBatchResult['issues']>().toEqualTypeOf<ManifestIssue[]>();
    // @ts-expect-error a source is rows, a manifest path, csv text or a stream
    expectTypeOf<Enqueue>().toBeCallableWith({ path: 'people.csv' });
  });

  it('reads, waits for and cancels batches', () => {
    expectTypeOf<Talkbatch['getBatch']>().returns.resolves.toEqualTypeOf<BatchView | undefined>();
    expectTypeOf<Talkbatch['waitForBatch']>().toBeCallableWith('b', { timeoutMs: 1_000, signal: new AbortController().signal });
    expectTypeOf<Talkbatch['waitForBatch']>().returns.resolves.toEqualTypeOf<BatchView>();
    expectTypeOf<Talkbatch['cancelBatch']>().returns.resolves.toEqualTypeOf<CancelResult>();
    expectTypeOf<Talkbatch['batchResults']>().returns.toEqualTypeOf<AsyncIterable<ResultRecord>>();
    expectTypeOf<Talkbatch['startWorker']>().returns.resolves.toEqualTypeOf<TalkWorker>();
    expectTypeOf<BatchView['counts']>().toEqualTypeOf<BatchCounts>();
    expectTypeOf<BatchView['progress']>().toBeNumber();
  });

  it('samples a batch, then approves the rest', () => {
    expectTypeOf<Talkbatch['enqueueBatch']>().toBeCallableWith({ manifestPath: 'people.csv' }, { sample: 5 });
    expectTypeOf<SubmitBatchResult['held']>().toBeNumber();
    expectTypeOf<SubmitBatchResult['sample']>().toEqualTypeOf<SamplePick[] | undefined>();
    expectTypeOf<SamplePick>().toEqualTypeOf<{ rowKey: string; reason: string }>();
    expectTypeOf<Talkbatch['approveBatch']>().parameters.toEqualTypeOf<[batchId: string]>();
    expectTypeOf<Talkbatch['approveBatch']>().returns.resolves.toEqualTypeOf<ApproveResult>();
    expectTypeOf<ApproveResult>().toEqualTypeOf<{ batchId: string; approvedAt: string; released: number }>();
    expectTypeOf<BatchCounts['held']>().toBeNumber();
    expectTypeOf<BatchView['sample']>().toEqualTypeOf<{ size: number; approvedAt: string | null } | null>();
    expectTypeOf<CancelResult['heldDropped']>().toBeNumber();
    expectTypeOf(new talkbatch.ApprovalRefusedError('m', 'cancelled').reason).toEqualTypeOf<'cancelled' | 'not_sampled'>();
    expectTypeOf(talkbatch.ApprovalRefusedError).instance.toExtend<talkbatch.UsageError>();
    // @ts-expect-error a sample is a number of rows
    expectTypeOf<Talkbatch['enqueueBatch']>().toBeCallableWith({ manifestPath: 'people.csv' }, { sample: '5' });
  });
});

describe('exports', () => {
  it('re-exports payload and result types, errors, the D-ID client and the simulator', () => {
    expectTypeOf<JobPayload['batchId']>().toBeString();
    expectTypeOf<RowResult['status']>().toEqualTypeOf<'done'>();
    expectTypeOf(talkbatch.ManifestError).instance.toHaveProperty('issues').toEqualTypeOf<ManifestIssue[]>();
    expectTypeOf(talkbatch.DidClient).instance.toHaveProperty('getTalk');
    expectTypeOf(talkbatch.startSimulator).toBeFunction();
    expectTypeOf(talkbatch.startTalkWorker).toBeFunction();
    expectTypeOf(verifyCallbackSignature).returns.toBeBoolean();
    expectTypeOf(new talkbatch.BatchWaitTimeoutError('b', {} as BatchView).code).toEqualTypeOf<'WAIT_TIMEOUT'>();
  });

  it('keeps worker internals private', () => {
    expectTypeOf(talkbatch).not.toHaveProperty('createProcessor');
    expectTypeOf(talkbatch).not.toHaveProperty('Wakeups');
    expectTypeOf(talkbatch).not.toHaveProperty('AdaptiveConcurrency');
    expectTypeOf(talkbatch).not.toHaveProperty('BatchStore');
  });
});
