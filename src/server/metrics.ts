import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CreditReading } from '../did/billing.js';
import type { DidClientOptions } from '../did/index.js';
import type { ChargedTalk } from '../queue/credits.js';
import type { RowResult } from '../queue/payload.js';
import type { TalkQueue } from '../queue/talk-queue.js';
import type { WorkerMetricsHooks } from '../worker/create-worker.js';

type DidResponseInfo = Parameters<NonNullable<DidClientOptions['onResponse']>>[0];

/**
 * talkbatch's own Prometheus metrics, on a registry of their own so that embedding apps' registries
 * are left alone. Counters only see this process: scrape every `serve` and worker process you run.
 */
export class TalkbatchMetrics {
  readonly registry = new Registry();
  readonly #didResponses = new Counter({
    name: 'talkbatch_did_responses_total',
    help: 'D-ID API answers by route and HTTP status (0: no answer)',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly #renderSeconds = new Histogram({
    name: 'talkbatch_render_seconds',
    help: 'Time from a talk being created to D-ID finishing it, per row done',
    buckets: [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200],
    registers: [this.registry],
  });
  readonly #downloadBytes = new Counter({
    name: 'talkbatch_download_bytes_total',
    help: 'Bytes of finished videos written to the output directory',
    registers: [this.registry],
  });
  readonly #rows = new Counter({
    name: 'talkbatch_rows_total',
    help: 'Rows finished, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly #creditsRemaining = new Gauge({
    name: 'talkbatch_credits_remaining',
    help: 'D-ID credits left, as GET /credits last answered this process (before a batch\'s first talk, after its last)',
    // Registered at the first answer: an unlabelled gauge would read 0 (no credits) until then.
    registers: [],
  });
  readonly #creditsUsed = new Counter({
    name: 'talkbatch_credits_used_total',
    help: 'Credits of the talks this process finished (done rows, and the created talks of failed rows), by where the figure comes from: d-id (the billing rule on D-ID\'s reported length) or estimate',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    // Known label values start at 0, so a rate() over them works before the first row finishes.
    for (const outcome of ['done', 'failed']) this.#rows.inc({ outcome }, 0);
    for (const source of ['d-id', 'estimate']) this.#creditsUsed.inc({ source }, 0);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'talkbatch_' });
  }

  /** For DidClient's `onResponse`. */
  readonly observeDidResponse = (info: DidResponseInfo): void => {
    this.#didResponses.inc({ route: `${info.method} ${info.route}`, status: String(info.status) });
  };

  /** A GET /credits answer (the worker's before a batch, the finisher's after it). */
  readonly observeCredits = (reading: CreditReading): void => {
    if (reading.remaining === null) return;
    if (this.registry.getSingleMetric('talkbatch_credits_remaining') === undefined) this.registry.registerMetric(this.#creditsRemaining);
    this.#creditsRemaining.set(reading.remaining);
  };

  /** Hooks for startTalkWorker's `metrics` option. */
  get workerHooks(): WorkerMetricsHooks {
    return {
      onDidResponse: this.observeDidResponse,
      onRowCompleted: (result: RowResult) => {
        this.#rows.inc({ outcome: 'done' });
        if (typeof result.renderSeconds === 'number') this.#renderSeconds.observe(result.renderSeconds);
        if (typeof result.bytes === 'number') this.#downloadBytes.inc(result.bytes);
        if (typeof result.credits === 'number') this.#creditsUsed.inc({ source: result.creditsSource ?? 'estimate' }, result.credits);
      },
      onRowFailed: (charged?: ChargedTalk) => {
        this.#rows.inc({ outcome: 'failed' });
        if (charged) this.#creditsUsed.inc({ source: charged.creditsSource }, charged.credits);
      },
      onCreditsRead: this.observeCredits,
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Our metrics followed by BullMQ's own job-count gauges for the queue. */
  async render(queue: TalkQueue): Promise<string> {
    const [ours, bullmq] = await Promise.all([this.registry.metrics(), queue.exportPrometheusMetrics()]);
    return `${ours.trimEnd()}\n${bullmq.trimEnd()}\n`;
  }
}
