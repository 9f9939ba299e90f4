import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DidClientOptions } from '../did/index.js';
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

  constructor(options: { processMetrics?: boolean } = {}) {
    // Known label values start at 0, so a rate() over them works before the first row finishes.
    for (const outcome of ['done', 'failed']) this.#rows.inc({ outcome }, 0);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'talkbatch_' });
  }

  /** For DidClient's `onResponse`. */
  readonly observeDidResponse = (info: DidResponseInfo): void => {
    this.#didResponses.inc({ route: `${info.method} ${info.route}`, status: String(info.status) });
  };

  /** Hooks for startTalkWorker's `metrics` option. */
  get workerHooks(): WorkerMetricsHooks {
    return {
      onDidResponse: this.observeDidResponse,
      onRowCompleted: (result: RowResult) => {
        this.#rows.inc({ outcome: 'done' });
        if (typeof result.renderSeconds === 'number') this.#renderSeconds.observe(result.renderSeconds);
        if (typeof result.bytes === 'number') this.#downloadBytes.inc(result.bytes);
      },
      onRowFailed: () => this.#rows.inc({ outcome: 'failed' }),
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
