/**
 * When to look at a talk D-ID is rendering. D-ID never says how long a render will take, but the
 * talks it finished lately say it well (their own `created_at` → `modified_at`). So once a few renders
 * are known, a fresh talk is first looked at when the quickest of them would have finished, then
 * every 2.5 % of the typical render while it is due (but no more than ~20 looks across the spread of
 * render times, so a wide spread costs D-ID no more requests), then ever less often once it is slower
 * than nearly all of them. Every wait stays within TALKBATCH_POLL_MAX_MS. Until then (a new worker, or renders
 * that vary wildly) the configured back-off applies: TALKBATCH_POLL_INITIAL_MS, × 1.5, up to
 * TALKBATCH_POLL_MAX_MS.
 *
 * Why it matters: a row holds its slot until we see its talk done. Polls 1, 2.5, 4.75 s after a 2 s
 * render keep a slot idle for most of another render; polls at 1.9, 2.0, 2.1 s do not.
 */
export interface RenderWindow {
  /** ~10th percentile of recent render times (ms). */
  low: number;
  median: number;
  /** ~90th percentile. */
  high: number;
}

const SAMPLES = 32;
const MIN_SAMPLES = 4;
/**
 * Polls while a talk is due come every this share of the typical render: a talk is seen about half a
 * step after it is done, and its slot is idle meanwhile (5 % cost 1.091 against 1.074 for 2.5 %, N = 600,
 * C = 32, T = 2 s ± 25 %, docs/performance.md) ...
 */
const DUE_STEP_SHARE = 0.025;
/** ... unless that would mean more than this many looks between the quick and the slow renders ... */
const MAX_DUE_LOOKS = 20;
/** ... and never closer together than this. */
const MIN_STEP_MS = 50;

/** Recent render times, one process's view (each worker process learns its own). */
export class RenderTimes {
  readonly #samples: number[] = [];
  #next = 0;

  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    if (this.#samples.length < SAMPLES) this.#samples.push(ms);
    else this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % SAMPLES;
  }

  window(): RenderWindow | undefined {
    if (this.#samples.length < MIN_SAMPLES) return undefined;
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
    return { low: at(0.1), median: at(0.5), high: at(0.9) };
  }
}

/** Step between polls while a talk is due. */
export function dueStepMs(window: RenderWindow, maxMs: number): number {
  return Math.min(maxMs, Math.max(MIN_STEP_MS, window.median * DUE_STEP_SHARE, (window.high - window.low) / MAX_DUE_LOOKS));
}

/**
 * How long to wait before the next look at a talk.
 * @param elapsedMs since the talk was created
 * @param polls looks taken at this talk so far
 */
export function nextPollDelay(options: { elapsedMs: number; polls: number; window: RenderWindow | undefined; initialMs: number; maxMs: number }): number {
  const { elapsedMs, polls, window, initialMs, maxMs } = options;
  if (!window) return Math.min(maxMs, initialMs * 1.5 ** Math.max(0, polls - 1));
  const step = dueStepMs(window, maxMs);
  // Not due yet: sleep until the quickest recent render would have finished.
  if (elapsedMs < window.low - step) return Math.min(maxMs, window.low - elapsedMs);
  if (elapsedMs <= window.high) return step;
  // Slower than nearly every recent render: back off, by half of how late it already is.
  return Math.min(maxMs, Math.max(step, (elapsedMs - window.high) / 2));
}
