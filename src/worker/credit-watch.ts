import { EventEmitter } from 'node:events';
import type { Queue } from 'bullmq';
import type { DidClient, DidPaymentRequiredError } from '../did/index.js';
import type { Logger } from '../shared/logger.js';
import type { RedisClient } from '../queue/connections.js';
import { queueKeys } from '../queue/keys.js';

/**
 * 402 means the account is out of credits: no row is at fault, so none fails. The queue is paused
 * (for every worker), a marker says why, and GET /credits is checked at a slow interval; the queue
 * resumes by itself once credits are back. An operator's own pause (no marker) is never undone here.
 */
export class CreditWatch extends EventEmitter {
  #timer: NodeJS.Timeout | undefined;
  readonly #markerKey: string;

  constructor(
    private readonly options: { queue: Queue; did: DidClient; redis: RedisClient; logger: Logger; intervalMs: number; markerKey: string },
  ) {
    super();
    this.#markerKey = options.markerKey;
  }

  async exhausted(error: DidPaymentRequiredError): Promise<void> {
    const first = (await this.options.redis.set(this.#markerKey, new Date().toISOString(), 'NX')) === 'OK';
    await this.options.queue.pause();
    if (first) {
      this.options.logger.error(
        { kind: error.kind, description: error.description },
        `D-ID is out of credits (402): queue paused; checking GET /credits every ${Math.round(this.options.intervalMs / 1000)} s and resuming when credits return (or run "talkbatch resume")`,
      );
      this.emit('exhausted', error);
    }
    this.#watch();
  }

  /** A worker that starts while the queue is paused for credits takes over the watching. */
  async watchIfPaused(): Promise<void> {
    if ((await this.options.redis.exists(this.#markerKey)) === 1) this.#watch();
  }

  #watch(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.#check(), this.options.intervalMs);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    try {
      if ((await this.options.redis.exists(this.#markerKey)) === 0) {
        // Someone (an operator, another worker) already resumed.
        this.stop();
        return;
      }
      const credits = await this.options.did.getCredits();
      if (credits.remaining > 0) {
        await this.options.redis.del(this.#markerKey);
        await this.options.queue.resume();
        this.options.logger.info({ remaining: credits.remaining }, 'D-ID credits are back: queue resumed');
        this.emit('resumed', credits.remaining);
        this.stop();
      }
    } catch (error) {
      this.options.logger.warn({ err: (error as Error).message }, 'credit check failed; trying again later');
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

export function creditMarkerKey(prefix: string, queueName: string): string {
  return queueKeys(prefix, queueName).pausedForCredits();
}
