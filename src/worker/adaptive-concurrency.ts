import type { Queue } from 'bullmq';

/**
 * Finds an unknown D-ID concurrent-render cap by itself (AIMD): a 429 on create cuts the queue's global
 * concurrency, a run of clean creates raises it by one, never above the configured ceiling. The value
 * lives in Redis (BullMQ global concurrency), so every worker on every machine follows it.
 */
export class AdaptiveConcurrency {
  #successes = 0;
  #lastDecreaseAt = Number.NEGATIVE_INFINITY;
  #current: number;

  constructor(
    private readonly queue: Pick<Queue, 'setGlobalConcurrency' | 'getGlobalConcurrency'>,
    readonly ceiling: number,
    private readonly options: { decreaseFactor?: number; cooldownMs?: number; probeAfterMs?: number; now?: () => number } = {},
  ) {
    this.#current = ceiling;
  }

  get current(): number {
    return this.#current;
  }

  /**
   * Sets the shared value to the ceiling unless other workers already learned a lower one (a new
   * worker must not undo what 429s taught); a value above the ceiling is brought down to it.
   */
  async start(): Promise<void> {
    const shared = await this.queue.getGlobalConcurrency();
    if (shared === null || shared === undefined || shared > this.ceiling || shared < 1) {
      await this.queue.setGlobalConcurrency(this.ceiling);
      this.#current = this.ceiling;
    } else {
      this.#current = shared;
    }
  }

  /**
   * @param rendering talks of ours D-ID is rendering right now. When it is below the limit, the 429
   *   comes from a plan's concurrent-render cap and this number is the cap itself: the limit goes
   *   straight to it (down from a high ceiling, or back from a failed probe one above the cap). With
   *   every slot rendering, the 429 says something else (a request rate, a shared account): the
   *   limit is cut by the decrease factor.
   */
  async onRateLimited(rendering?: number): Promise<void> {
    const now = (this.options.now ?? Date.now)();
    this.#successes = 0;
    // One burst of 429s (every slot over the cap answering at once) is one signal, not many.
    if (now - this.#lastDecreaseAt < (this.options.cooldownMs ?? 1_000)) return;
    this.#lastDecreaseAt = now;
    const shared = (await this.queue.getGlobalConcurrency()) ?? this.#current;
    const cut = Math.floor(shared * (this.options.decreaseFactor ?? 0.75));
    const next = Math.max(1, rendering !== undefined && rendering > 0 && rendering < shared ? rendering : cut);
    if (next < shared) await this.queue.setGlobalConcurrency(next);
    this.#current = Math.min(next, shared);
  }

  async onCreated(): Promise<void> {
    this.#successes += 1;
    // Probe upward rarely: a failed probe costs a 429 and a short queue-wide back-off.
    if (this.#successes < Math.max(10, this.#current * 3)) return;
    if ((this.options.now ?? Date.now)() - this.#lastDecreaseAt < (this.options.probeAfterMs ?? 10_000)) return;
    this.#successes = 0;
    const shared = (await this.queue.getGlobalConcurrency()) ?? this.#current;
    if (shared < this.ceiling) {
      await this.queue.setGlobalConcurrency(shared + 1);
      this.#current = shared + 1;
    } else {
      this.#current = shared;
    }
  }
}
