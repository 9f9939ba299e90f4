import type { Redis } from 'ioredis';

/**
 * Lets a webhook (or anything else that learns a talk is finished) cut a job's poll wait short. Wakes
 * travel over Redis pub/sub, so the webhook server and the worker holding the job need not share a
 * process. A lost wake costs nothing but latency: the job still polls.
 */
export class Wakeups {
  readonly #waiting = new Map<string, () => void>();
  #subscriber: Redis | undefined;

  constructor(readonly channel: string) {}

  /** Starts listening on `subscriber` (a dedicated connection; it enters subscriber mode). */
  async listen(subscriber: Redis): Promise<void> {
    this.#subscriber = subscriber;
    subscriber.on('message', (channel: string, jobId: string) => {
      if (channel === this.channel) this.wake(jobId);
    });
    await subscriber.subscribe(this.channel);
  }

  /** Waits `ms`, or less if the job is woken; rejects when `signal` aborts. Resolves true when woken. */
  wait(jobId: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const finish = (woken: boolean): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (this.#waiting.get(jobId) === onWake) this.#waiting.delete(jobId);
        resolve(woken);
      };
      const onWake = (): void => finish(true);
      const onAbort = (): void => {
        clearTimeout(timer);
        if (this.#waiting.get(jobId) === onWake) this.#waiting.delete(jobId);
        reject(signal?.reason as Error);
      };
      const timer = setTimeout(() => finish(false), Math.max(0, ms));
      this.#waiting.set(jobId, onWake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  wake(jobId: string): boolean {
    const wake = this.#waiting.get(jobId);
    wake?.();
    return wake !== undefined;
  }

  async close(): Promise<void> {
    if (this.#subscriber) {
      await this.#subscriber.unsubscribe(this.channel).catch(() => undefined);
      this.#subscriber.disconnect();
    }
  }
}

export function wakeChannel(prefix: string, queueName: string): string {
  return `${prefix}:${queueName}:wake`;
}

/** Wakes a job waiting on D-ID, wherever its worker runs. Returns how many worker processes heard it. */
export function publishWake(redis: Redis, prefix: string, queueName: string, jobId: string): Promise<number> {
  return redis.publish(wakeChannel(prefix, queueName), jobId);
}
