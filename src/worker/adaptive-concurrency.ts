/** Where the render limit every worker follows is kept (queue/render-slots.ts, RenderLimit). */
export interface SharedLimit {
  get(): Promise<number | null>;
  set(limit: number): Promise<unknown>;
}

/**
 * Finds an unknown D-ID concurrent-render cap by itself (AIMD): a 429 on create cuts the render limit, a
 * run of clean creates raises it by one, never above the configured ceiling. The value lives in Redis
 * (the render slots' limit, with BullMQ's global concurrency a little above it), so every worker on every
 * machine follows it.
 */
export class AdaptiveConcurrency {
  #successes = 0;
  #lastDecreaseAt = Number.NEGATIVE_INFINITY;
  #current: number;
  /** The burst of 429s now being read as a plan's render cap: when it began, and the limit before it. */
  #capBurst: { at: number; from: number } | undefined;
  /** The most renders in flight any 429 of the current burst saw. */
  #burstMax = 0;

  constructor(
    private readonly limit: SharedLimit,
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
    const shared = await this.limit.get();
    if (shared === null || shared > this.ceiling || shared < 1) {
      await this.limit.set(this.ceiling);
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
   * @param recount reads that number again. Creates answered in the same instant as this 429 may not
   *   be counted yet (responses are handled in socket order, not in the order D-ID answered them),
   *   so it is read once more a moment later, and the later 429s of the burst count too: the cap is
   *   at least the most renders seen at once, so the limit is raised to that, never past where it was
   *   before the burst.
   */
  async onRateLimited(rendering?: number, recount?: () => Promise<number>): Promise<void> {
    const now = (this.options.now ?? Date.now)();
    this.#successes = 0;
    // One burst of 429s (every slot over the cap answering at once) is one signal, not many.
    if (now - this.#lastDecreaseAt < (this.options.cooldownMs ?? 1_000)) {
      if (rendering !== undefined) {
        this.#burstMax = Math.max(this.#burstMax, rendering);
        await this.#raiseWithinBurst(this.#capBurst, rendering);
      }
      return;
    }
    this.#lastDecreaseAt = now;
    this.#capBurst = undefined;
    this.#burstMax = rendering ?? 0;
    const shared = (await this.limit.get()) ?? this.#current;
    const cut = Math.floor(shared * (this.options.decreaseFactor ?? 0.75));
    // Includes what the burst's other 429s saw while the shared value was being read.
    const seen = this.#burstMax;
    const capSeen = seen > 0 && seen < shared;
    const next = Math.max(1, capSeen ? seen : cut);
    if (next < shared) await this.limit.set(next);
    this.#current = Math.min(next, shared);
    const burst = capSeen ? { at: now, from: shared } : undefined;
    this.#capBurst = burst;
    if (burst && recount) {
      const timer = setTimeout(() => {
        recount()
          .then((count) => this.#raiseWithinBurst(burst, count))
          .catch(() => undefined);
      }, RECOUNT_AFTER_MS);
      timer.unref();
    }
  }

  async #raiseWithinBurst(burst: { at: number; from: number } | undefined, rendering: number): Promise<void> {
    const now = (this.options.now ?? Date.now)();
    if (!burst || burst !== this.#capBurst || now - burst.at >= (this.options.cooldownMs ?? 1_000)) return;
    if (rendering > this.#current && rendering < burst.from) {
      await this.limit.set(rendering);
      this.#current = rendering;
    }
  }

  async onCreated(): Promise<void> {
    this.#successes += 1;
    // Probe upward rarely: a failed probe costs a 429 and a short queue-wide back-off.
    if (this.#successes < Math.max(10, this.#current * 3)) return;
    if ((this.options.now ?? Date.now)() - this.#lastDecreaseAt < (this.options.probeAfterMs ?? 10_000)) return;
    this.#successes = 0;
    const shared = (await this.limit.get()) ?? this.#current;
    if (shared < this.ceiling) {
      await this.limit.set(shared + 1);
      this.#current = shared + 1;
    } else {
      this.#current = shared;
    }
  }
}

/** How long after the first 429 of a burst the renders in flight are counted again. */
const RECOUNT_AFTER_MS = 100;
