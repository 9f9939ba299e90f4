import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config/index.js';
import { outboundFetch, OutboundRefusedError } from '../net/outbound.js';
import type { BatchCounts } from '../queue/batches.js';
import type { QueueHandle } from '../queue/talk-queue.js';
import { writeBatchReport, type ReportFiles, type ReportOptions } from '../report/results.js';
import { sleep } from '../shared/clock.js';
import type { Logger } from '../shared/logger.js';
import type { RowWebhookEvent } from '../worker/processor.js';
import type { RedisClient } from '../queue/connections.js';
import { queueKeys, type QueueKeys } from '../queue/keys.js';
import type { CreditReading } from '../did/billing.js';
import { creditReaderFor, type CreditReader } from './credits.js';

export type { RowWebhookEvent } from '../worker/processor.js';

export const SIGNATURE_HEADER = 'x-talkbatch-signature';

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp is signed too, so an old delivery cannot be replayed as new. */
export function signCallback(secret: string, body: string, timestampSeconds: number = Math.floor(Date.now() / 1000)): string {
  const signature = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
  return `t=${timestampSeconds},v1=${signature}`;
}

/** For receivers: true when `header` signs `body` (the raw bytes as received) and is at most `toleranceSeconds` old. */
export function verifyCallbackSignature(
  secret: string,
  body: string | Buffer,
  header: string | undefined,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  if (!header) return false;
  const parts = new Map(header.split(',').map((part) => part.trim().split('=', 2) as [string, string | undefined]));
  const timestamp = Number(parts.get('t'));
  const given = parts.get('v1');
  if (!Number.isInteger(timestamp) || !given || !/^[0-9a-f]{64}$/.test(given)) return false;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(given, 'hex'));
}

/** The JSON body POSTed to a batch's callbackUrl. */
export interface BatchCallbackBody {
  event: 'batch.finished';
  batchId: string;
  finishedAt: string;
  cancelledAt?: string;
  counts: BatchCounts;
  /** Present when the server's public URL is known. */
  resultsUrl?: string;
}

/** The JSON body POSTed to a row's own webhook (signed like batch callbacks). */
export interface RowWebhookBody {
  event: 'talk.done';
  batchId: string;
  rowKey: string;
  jobId: string;
  talkId: string;
  status: 'done';
  file: string;
  sha256: string;
  bytes: number;
  talk: Record<string, unknown>;
}

/**
 * One delivery attempt as API callers see it: coarse on purpose. Error codes (ECONNREFUSED against a timeout) and
 * timings would let anyone who can set a callback URL map which ports answer; the details go to the server log.
 */
export interface CallbackAttempt {
  attempt: number;
  /** When the attempt started (ISO 8601). */
  at: string;
  ok: boolean;
  /** The receiver's HTTP status, when it answered. */
  status?: number;
  /** Why the attempt failed: `HTTP <status>`, `not delivered`, or a refusal the submitter must fix. */
  error?: string;
}

export interface CallbackStatus {
  attempts: CallbackAttempt[];
  deliveredAt: string | null;
}

/** Every delivery attempt, kept in a Redis list next to the batch's ledger keys (same prefix and hash tag). */
export class CallbackLog {
  readonly #redis: RedisClient;
  readonly #keys: QueueKeys;

  constructor(redis: RedisClient, prefix: string, queueName: string) {
    this.#redis = redis;
    this.#keys = queueKeys(prefix, queueName);
  }

  /** A row's own webhook (`rowKey`) has its list beside the batch callback's, under the same batch prefix. */
  #key(batchId: string, rowKey?: string): string {
    return rowKey === undefined ? this.#keys.batch(batchId, 'callbacks') : this.#keys.rowWebhooks(batchId, rowKey);
  }

  async record(batchId: string, attempt: CallbackAttempt, rowKey?: string): Promise<void> {
    await this.#redis.rpush(this.#key(batchId, rowKey), JSON.stringify(attempt));
  }

  /** The batch callback's attempts, or with `rowKey` those of that row's own webhook. */
  async status(batchId: string, rowKey?: string): Promise<CallbackStatus> {
    const entries = await this.#redis.lrange(this.#key(batchId, rowKey), 0, -1);
    const attempts = entries.map((entry) => JSON.parse(entry) as CallbackAttempt);
    return { attempts, deliveredAt: attempts.find((attempt) => attempt.ok)?.at ?? null };
  }
}

export interface CallbackRetry {
  /** Tries in all (default 5). */
  attempts: number;
  /** Wait before the 2nd try; doubles each time (default 1 s: 1, 2, 4, 8 s). */
  baseDelayMs: number;
  /** Per try (default 10 s). */
  timeoutMs: number;
}

export const DEFAULT_CALLBACK_RETRY: Readonly<CallbackRetry> = Object.freeze({ attempts: 5, baseDelayMs: 1_000, timeoutMs: 10_000 });

/** Writes one batch's results report at a time per process (writers share temp file names per process). */
export class ReportWriter {
  readonly #inFlight = new Map<string, Promise<ReportFiles>>();

  constructor(
    private readonly handle: Pick<QueueHandle, 'queue' | 'batches'>,
    private readonly outDir: string,
    private readonly options: ReportOptions = {},
  ) {}

  write(batchId: string): Promise<ReportFiles> {
    const running = this.#inFlight.get(batchId);
    if (running) return running;
    const writing = writeBatchReport(this.handle, batchId, this.outDir, this.options).finally(() => this.#inFlight.delete(batchId));
    this.#inFlight.set(batchId, writing);
    return writing;
  }
}

export interface BatchFinisherOptions {
  config: Pick<Config, 'callbackSecret' | 'outDir' | 'prefix' | 'queueName' | 'publicUrl' | 'shareBaseUrl' | 'outboundAllow' | 'didApiKey' | 'didApiUrl' | 'httpTimeoutMs'>;
  handle: Pick<QueueHandle, 'queue' | 'batches' | 'redis'>;
  logger: Logger;
  /** Base of `resultsUrl` in callbacks; default config.publicUrl. */
  publicUrl?: string;
  retry?: Partial<CallbackRetry>;
  reports?: ReportWriter;
  /** Reads D-ID's balance once a batch finishes; default a reader on config's API key (none without one). */
  credits?: CreditReader;
  /** Each balance read (for the credits gauge); must not throw. */
  onCreditsRead?: (reading: CreditReading) => void;
}

/**
 * What happens once a batch's last row has an outcome (BatchStore.claimFinished makes that exactly
 * once across workers): the results report is written and, when the batch has a callbackUrl, a signed
 * summary is POSTed to it with retries. Pass `onBatchFinished` to startTalkWorker.
 */
export class BatchFinisher {
  readonly callbacks: CallbackLog;
  /** Shared with whoever else writes this process's reports (the results.csv route). */
  readonly reports: ReportWriter;
  readonly #options: BatchFinisherOptions;
  readonly #retry: CallbackRetry;
  readonly #stop = new AbortController();
  readonly #running = new Set<Promise<unknown>>();
  readonly #credits: CreditReader | undefined;

  constructor(options: BatchFinisherOptions) {
    this.#options = options;
    this.#credits = options.credits ?? creditReaderFor(options.config);
    this.#retry = { ...DEFAULT_CALLBACK_RETRY, ...options.retry };
    this.reports = options.reports ?? new ReportWriter(options.handle, options.config.outDir, { shareBaseUrl: options.config.shareBaseUrl });
    this.callbacks = new CallbackLog(options.handle.redis, options.config.prefix, options.config.queueName);
  }

  readonly onBatchFinished = (batchId: string): Promise<void> => this.#track(this.#finish(batchId));

  /**
   * A sampled batch's sample rows all have an outcome and the rest is held (BatchStore.claimOutcome, once across
   * workers): its review page is written, so someone can look before approving. No callback: the batch goes on.
   */
  readonly onSampleReady = (batchId: string): Promise<void> => this.#track(this.#sampleReady(batchId));

  /**
   * Fire-and-record: POSTs to a row's own webhook in the background, retried like batch callbacks, so the worker's
   * render slot is never held by a slow receiver. Never throws; every attempt is in the CallbackLog under the row.
   */
  readonly onRowWebhook = (event: RowWebhookEvent): void => {
    void this.#track(this.deliverRowWebhook(event)).catch((error: unknown) =>
      this.#options.logger.warn({ batchId: event.batchId, rowKey: event.rowKey, err: String(error) }, 'row webhook failed'),
    );
  };

  /** Resolves once the reports and deliveries under way are over (a short-lived command waits for them before it exits). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  /** Stops waiting between retries; attempts made so far stay recorded. */
  async close(): Promise<void> {
    this.#stop.abort(new Error('shutting down'));
    await Promise.allSettled([...this.#running]);
  }

  async #track<T>(work: Promise<T>): Promise<T> {
    this.#running.add(work);
    try {
      return await work;
    } finally {
      this.#running.delete(work);
    }
  }

  async #finish(batchId: string): Promise<void> {
    const { logger } = this.#options;
    await this.#recordCreditsAfter(batchId);
    try {
      const report = await this.reports.write(batchId);
      logger.info({ batchId, ...report.counts, results: report.csv }, 'batch finished');
    } catch (error) {
      logger.warn({ batchId, err: String(error) }, 'could not write the batch report');
    }
    await this.deliver(batchId);
  }

  async #sampleReady(batchId: string): Promise<void> {
    const { logger } = this.#options;
    try {
      const report = await this.reports.write(batchId);
      logger.info({ batchId, ...report.counts, review: report.html }, `sample ready for review; approve the rest with "talkbatch approve ${batchId}"`);
    } catch (error) {
      logger.warn({ batchId, err: String(error) }, 'could not write the sample\'s review page');
    }
  }

  /** D-ID's balance now that every row has an outcome, before the report that shows it is written. */
  async #recordCreditsAfter(batchId: string): Promise<void> {
    if (!this.#credits) return;
    try {
      const reading = await this.#credits();
      if (reading.remaining !== null) this.#options.onCreditsRead?.(reading);
      await this.#options.handle.batches.recordCreditsAfter(batchId, reading);
      this.#options.logger.info({ batchId, remaining: reading.remaining, ...(reading.error ? { err: reading.error } : {}) }, 'D-ID credits after the batch');
    } catch (error) {
      this.#options.logger.warn({ batchId, err: String(error) }, 'could not record the credits after the batch');
    }
  }

  /** POSTs the batch's summary to its callbackUrl, retrying with backoff; true once a receiver answered 2xx. */
  async deliver(batchId: string): Promise<boolean> {
    const { handle, logger, config } = this.#options;
    const batch = await handle.batches.get(batchId);
    if (!batch?.callbackUrl) return false;
    const url = batch.callbackUrl;
    if (!config.callbackSecret) {
      await this.callbacks.record(batchId, { attempt: 1, at: new Date().toISOString(), ok: false, error: 'not sent: TALKBATCH_CALLBACK_SECRET is not set' });
      logger.error({ batchId }, 'batch callback not sent: TALKBATCH_CALLBACK_SECRET is not set');
      return false;
    }
    const publicUrl = this.#options.publicUrl ?? config.publicUrl;
    const summary: BatchCallbackBody = {
      event: 'batch.finished',
      batchId,
      finishedAt: batch.finishedAt ?? new Date().toISOString(),
      ...(batch.cancelledAt ? { cancelledAt: batch.cancelledAt } : {}),
      counts: batch.counts,
      ...(publicUrl ? { resultsUrl: `${publicUrl.replace(/\/+$/, '')}/v1/batches/${encodeURIComponent(batchId)}/results.csv` } : {}),
    };
    return this.#postSigned(JSON.stringify(summary), url, { batchId }, 'batch callback');
  }

  /** POSTs the row's `talk.done` event to the row's own webhook, with retries; true once a receiver answered 2xx. */
  async deliverRowWebhook(event: RowWebhookEvent): Promise<boolean> {
    const { logger, config } = this.#options;
    const { batchId, rowKey } = event;
    if (!config.callbackSecret) {
      await this.callbacks.record(batchId, { attempt: 1, at: new Date().toISOString(), ok: false, error: 'not sent: TALKBATCH_CALLBACK_SECRET is not set' }, rowKey);
      logger.error({ batchId, rowKey }, 'row webhook not sent: TALKBATCH_CALLBACK_SECRET is not set');
      return false;
    }
    const body: RowWebhookBody = {
      event: 'talk.done',
      batchId,
      rowKey,
      jobId: event.jobId,
      talkId: event.talkId,
      status: 'done',
      file: event.file,
      sha256: event.sha256,
      bytes: event.bytes,
      talk: event.talk,
    };
    return this.#postSigned(JSON.stringify(body), event.url, { batchId, rowKey }, 'row webhook');
  }

  async #postSigned(body: string, url: string, subject: { batchId: string; rowKey?: string }, what: string): Promise<boolean> {
    const { logger, config } = this.#options;
    const { batchId, rowKey } = subject;
    const secret = config.callbackSecret;
    if (!secret) return false;
    let where: string;
    try {
      // The URL may carry the receiver's own token: logs name only its origin.
      where = new URL(url).origin;
    } catch {
      await this.callbacks.record(batchId, { attempt: 1, at: new Date().toISOString(), ok: false, error: 'not sent: the URL is not valid' }, rowKey);
      return false;
    }
    const deliveryId = randomUUID();

    for (let attempt = 1; attempt <= this.#retry.attempts; attempt += 1) {
      if (this.#stop.signal.aborted) return false;
      const at = new Date().toISOString();
      let status: number | undefined;
      let error: string | undefined;
      let detail: string | undefined;
      let refused = false;
      try {
        const { response } = await outboundFetch(
          new URL(url),
          {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'user-agent': 'talkbatch-callback/1',
              [SIGNATURE_HEADER]: signCallback(secret, body),
              'x-talkbatch-delivery': deliveryId,
              'x-talkbatch-attempt': String(attempt),
            },
            body,
            timeoutMs: this.#retry.timeoutMs,
            signal: this.#stop.signal,
            // A redirect is not followed (the signed body is not re-sent elsewhere): that attempt is not delivered.
            maxRedirects: 0,
          },
          { allow: config.outboundAllow },
        );
        status = response.status;
        await response.body?.cancel().catch(() => undefined);
        if (status < 200 || status >= 300) error = `HTTP ${status}`;
      } catch (caught) {
        refused = caught instanceof OutboundRefusedError && caught.reason !== 'too-many-redirects';
        error = refused ? 'not sent: the callback URL is not a public address' : 'not delivered';
        const name = (caught as { name?: string } | null)?.name;
        const code = (caught as { cause?: { code?: string } } | null)?.cause?.code ?? (caught as { code?: string } | null)?.code;
        detail = name === 'TimeoutError' ? `no answer within ${this.#retry.timeoutMs} ms` : (code ?? (caught instanceof Error ? caught.message : String(caught)));
      }
      const ok = error === undefined;
      await this.callbacks.record(
        batchId,
        {
          attempt,
          at,
          ok,
          ...(status !== undefined ? { status } : {}),
          ...(error !== undefined ? { error } : {}),
        },
        rowKey,
      );
      if (ok) {
        logger.info({ batchId, ...(rowKey === undefined ? {} : { rowKey }), callback: where, attempt }, `${what} delivered`);
        return true;
      }
      // A refused address stays refused: trying again cannot help.
      const willRetry = attempt < this.#retry.attempts && !refused;
      logger.warn({ batchId, ...(rowKey === undefined ? {} : { rowKey }), callback: where, attempt, err: detail ?? error, willRetry }, `${what} failed`);
      if (!willRetry) break;
      try {
        await sleep(this.#retry.baseDelayMs * 2 ** (attempt - 1), this.#stop.signal);
      } catch {
        return false;
      }
    }
    return false;
  }
}
