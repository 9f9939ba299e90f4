import { request } from 'undici';

export interface WebhookLogger {
  warn(obj: object, msg?: string): void;
}

export interface WebhookDispatcherOptions {
  logger: WebhookLogger;
  onDelivered: () => void;
  onFailedAttempt: () => void;
  attempts?: number;
  retryDelayMs?: number;
  timeoutMs?: number;
}

/**
 * Posts talk webhooks on timers. Every timer and request belongs to the dispatcher so that `close()`
 * leaves nothing running; failures are logged and counted, never thrown.
 */
export class WebhookDispatcher {
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #shutdown = new AbortController();
  readonly #options: Required<WebhookDispatcherOptions>;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = { attempts: 3, retryDelayMs: 1000, timeoutMs: 5000, ...options };
  }

  /**
   * At `dueAtMs` (epoch ms), POSTs `payload()` to `url`. The payload is built when it is sent, so it shows
   * the talk as it is then (with a freshly signed result_url); `undefined` (the talk was deleted) sends nothing.
   */
  schedule(dueAtMs: number, url: string, payload: () => object | undefined): void {
    if (this.#shutdown.signal.aborted) return;
    const remainingMs = dueAtMs - Date.now();
    // Timers count from the event loop's cached clock and can fire a little early by Date.now(): wait out the rest.
    if (remainingMs > 0) {
      this.#after(remainingMs, () => this.schedule(dueAtMs, url, payload));
      return;
    }
    const body = payload();
    if (body !== undefined) this.#attempt(url, JSON.stringify(body), 1);
  }

  close(): void {
    this.#shutdown.abort();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #after(delayMs: number, action: () => void): void {
    if (this.#shutdown.signal.aborted) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      action();
    }, delayMs);
    this.#timers.add(timer);
  }

  #attempt(url: string, body: string, attempt: number): void {
    this.#post(url, body).then(
      () => this.#options.onDelivered(),
      (error: unknown) => {
        if (this.#shutdown.signal.aborted) return;
        this.#options.onFailedAttempt();
        const willRetry = attempt < this.#options.attempts;
        this.#options.logger.warn({ url, attempt, willRetry, err: error }, 'simulator: webhook delivery failed');
        if (willRetry) this.#after(this.#options.retryDelayMs, () => this.#attempt(url, body, attempt + 1));
      },
    );
  }

  async #post(url: string, body: string): Promise<void> {
    const { timeoutMs } = this.#options;
    const response = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'talkbatch-did-simulator' },
      body,
      signal: AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(timeoutMs)]),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      // No keep-alive: an idle socket held here would stop the receiver's server from closing.
      reset: true,
    });
    await response.body.dump();
    if (response.statusCode < 200 || response.statusCode >= 300) throw new Error(`webhook receiver answered HTTP ${response.statusCode}`);
  }
}
