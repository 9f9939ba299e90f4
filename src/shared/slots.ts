/**
 * A fixed number of slots taken without waiting: a caller over the cap is told so at once instead of queueing,
 * so the work it would have done (reading a large upload, say) is never started.
 */
export class Slots {
  #inUse = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a whole number of at least 1');
  }

  get inUse(): number {
    return this.#inUse;
  }

  /**
   * A held slot, or undefined when all are taken. The slot is freed once every holder has let go: the first
   * holder is the caller; `hold()` adds one (for work that may outlive the caller's own reason to hold it).
   */
  tryTake(): SlotLease | undefined {
    if (this.#inUse >= this.capacity) return undefined;
    this.#inUse++;
    let holders = 1;
    const release = (): void => {
      if (holders === 0) return;
      holders--;
      if (holders === 0) this.#inUse--;
    };
    return {
      hold: () => {
        if (holders === 0) return () => {};
        holders++;
        let released = false;
        return () => {
          if (released) return;
          released = true;
          release();
        };
      },
      release: (() => {
        let released = false;
        return () => {
          if (released) return;
          released = true;
          release();
        };
      })(),
    };
  }
}

export interface SlotLease {
  /** One more holder; call the returned function when that holder is done (calling it twice counts once). */
  hold: () => () => void;
  /** The first holder lets go (calling it twice counts once); a plain function, so it can be passed as a listener. */
  release: () => void;
}
