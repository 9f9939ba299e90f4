import type { RedisClient } from '../queue/connections.js';
import { queueKeys } from '../queue/keys.js';

/**
 * Lets a webhook (or anything else that learns a talk is finished) cut a job's poll wait short. Wakes
 * travel over Redis pub/sub, so the webhook server and the worker holding the job need not share a
 * process. A lost wake costs nothing but latency: the job still polls.
 */
export class Wakeups {
  readonly #waiting = new Map<string, () => void>();
  /** Rows waiting for a render slot, longest-waiting first. */
  readonly #slotWaiters = new Set<() => void>();
  /**
   * Wakes that found no one waiting, by job id, with when they came. A webhook can beat its job to
   * the wait (the talk finished while the job was still checkpointing); the job's next wait then
   * returns at once instead of sleeping through a poll interval. Every worker process hears every
   * wake, so entries for other processes' jobs just expire.
   */
  readonly #early = new Map<string, number>();
  #subscriber: RedisClient | undefined;

  constructor(
    readonly channel: string,
    /** Where freed render slots are announced (render-slots.ts); without one, rows wait for slots on their timers. */
    readonly slotChannel?: string,
  ) {}

  /** Starts listening on `subscriber` (a dedicated connection; it enters subscriber mode). */
  async listen(subscriber: RedisClient): Promise<void> {
    this.#subscriber = subscriber;
    subscriber.on('message', (channel: string, jobId: string) => {
      if (channel === this.channel) this.wake(jobId);
      else if (channel === this.slotChannel) this.slotFreed();
    });
    await subscriber.subscribe(...(this.slotChannel ? [this.channel, this.slotChannel] : [this.channel]));
  }

  /**
   * Waits `ms`, or less if the job is woken; rejects when any of `signals` aborts. Resolves true when woken.
   * Takes several signals rather than one `AbortSignal.any()`: on Node 20 every any() leaves a WeakRef in
   * each long-lived source signal (the worker's hand-back signal) that is never dropped, about 60 bytes
   * per wait, which grew `run` and `worker` with every row.
   */
  wait(jobId: string, ms: number, signals?: AbortSignal | readonly (AbortSignal | undefined)[]): Promise<boolean> {
    const earlyAt = this.#early.get(jobId);
    if (earlyAt !== undefined) {
      this.#early.delete(jobId);
      if (Date.now() - earlyAt <= EARLY_WAKE_TTL_MS && !watchedOf(signals).some((signal) => signal.aborted)) return Promise.resolve(true);
    }
    return this.#sleep(ms, signals, (onWake) => {
      this.#waiting.set(jobId, onWake);
      return () => {
        if (this.#waiting.get(jobId) === onWake) this.#waiting.delete(jobId);
      };
    });
  }

  /**
   * Waits `ms` for a render slot to free (render-slots.ts), or less when one does: resolves true when woken.
   * Each freed slot wakes the row of this process that has waited longest; the slot goes to whichever row of
   * any process asks first, and the others wait on.
   */
  waitForSlot(ms: number, signals?: AbortSignal | readonly (AbortSignal | undefined)[]): Promise<boolean> {
    return this.#sleep(ms, signals, (onWake) => {
      this.#slotWaiters.add(onWake);
      return () => this.#slotWaiters.delete(onWake);
    });
  }

  /** A render slot freed somewhere: the longest-waiting row here tries for it. */
  slotFreed(): boolean {
    const [first] = this.#slotWaiters;
    if (!first) return false;
    first();
    return true;
  }

  #sleep(ms: number, signals: AbortSignal | readonly (AbortSignal | undefined)[] | undefined, register: (onWake: () => void) => () => void): Promise<boolean> {
    const watched = watchedOf(signals);
    return new Promise((resolve, reject) => {
      const aborted = watched.find((signal) => signal.aborted);
      if (aborted) {
        reject(aborted.reason as Error);
        return;
      }
      let unregister: () => void = () => {};
      const stopWatching = (): void => {
        clearTimeout(timer);
        for (const signal of watched) signal.removeEventListener('abort', onAbort);
        unregister();
      };
      const finish = (woken: boolean): void => {
        stopWatching();
        resolve(woken);
      };
      const onWake = (): void => finish(true);
      const onAbort = (event: Event): void => {
        stopWatching();
        reject((event.target as AbortSignal).reason as Error);
      };
      const timer = setTimeout(() => finish(false), Math.max(0, ms));
      unregister = register(onWake);
      for (const signal of watched) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Wakes every row of this process waiting now (not those of other processes). */
  wakeAllHere(): number {
    const waiting = [...this.#waiting.values()];
    for (const wake of waiting) wake();
    return waiting.length;
  }

  wake(jobId: string): boolean {
    const wake = this.#waiting.get(jobId);
    if (wake) {
      wake();
      return true;
    }
    this.#remember(jobId);
    return false;
  }

  #remember(jobId: string): void {
    const now = Date.now();
    this.#early.delete(jobId);
    this.#early.set(jobId, now);
    // Oldest first (insertion order): drop what expired, and never keep more than the cap.
    for (const [id, at] of this.#early) {
      if (now - at <= EARLY_WAKE_TTL_MS && this.#early.size <= EARLY_WAKE_MAX) break;
      this.#early.delete(id);
    }
  }

  async close(): Promise<void> {
    if (this.#subscriber) {
      await this.#subscriber.unsubscribe(...(this.slotChannel ? [this.channel, this.slotChannel] : [this.channel])).catch(() => undefined);
      this.#subscriber.disconnect();
    }
  }
}

function watchedOf(signals: AbortSignal | readonly (AbortSignal | undefined)[] | undefined): AbortSignal[] {
  return (Array.isArray(signals) ? signals : [signals]).filter((signal): signal is AbortSignal => signal !== undefined);
}

/** A wake that came before its job waited still counts this long. */
const EARLY_WAKE_TTL_MS = 30_000;
const EARLY_WAKE_MAX = 10_000;

export function wakeChannel(prefix: string, queueName: string): string {
  return queueKeys(prefix, queueName).wakeChannel();
}

/** Wakes a job waiting on D-ID, wherever its worker runs. Returns how many worker processes heard it. */
export function publishWake(redis: RedisClient, prefix: string, queueName: string, jobId: string): Promise<number> {
  return redis.publish(wakeChannel(prefix, queueName), jobId);
}
