import type { RenderSlots, SlotVerdict } from '../queue/render-slots.js';
import type { Wakeups } from './wakeups.js';

/**
 * This process's side of the render slots every worker shares (queue/render-slots.ts): takes and gives them
 * back (which tells every worker), renews the leases of those it holds (every third of a lease, one call
 * for all), and lets rows wait for one.
 */
export class SlotKeeper {
  readonly #held = new Set<string>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly slots: RenderSlots,
    private readonly wakeups: Wakeups,
    private readonly onError: (error: unknown, what: string) => void,
  ) {
    this.#timer = setInterval(() => {
      if (this.#held.size > 0) this.slots.renew([...this.#held]).catch((error: unknown) => this.onError(error, 'renewing render slots'));
    }, Math.max(100, Math.floor(slots.leaseMs / 3)));
    this.#timer.unref();
  }

  /** `force`: the talk already renders at D-ID (adopted, or resumed after a crash), so it holds a slot whatever the count. */
  async take(jobId: string, batchId: string, force = false): Promise<SlotVerdict> {
    const verdict = await this.slots.take(jobId, batchId, { force });
    if (verdict.kind === 'taken') this.#held.add(jobId);
    return verdict;
  }

  /** Gives the slot back (and takes the talk off the render count), announcing it to every worker. */
  async release(jobId: string): Promise<void> {
    this.#held.delete(jobId);
    await this.slots.release(jobId);
  }

  /**
   * Stops renewing a slot without giving it back: this try lost its row to another worker, which holds the
   * same slot (the same job id) now. Unrenewed, it lapses after a lease if nobody holds it.
   */
  forget(jobId: string): void {
    this.#held.delete(jobId);
  }

  wait(ms: number, signals: readonly (AbortSignal | undefined)[]): Promise<boolean> {
    return this.wakeups.waitForSlot(ms, signals);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
