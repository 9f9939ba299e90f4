interface Bucket {
  tokens: number;
  refilledAtMs: number;
}

/**
 * One token bucket per API key. A bucket holds one second's worth of requests (at least one), so a
 * client may burst up to the rate and then gets 429 until tokens flow back in.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();

  /** Takes a token for `key`; false means the request is over the limit. The rate is read per call so a knob change applies at once. */
  tryTake(key: string, ratePerSecond: number, nowMs: number): boolean {
    if (ratePerSecond === Infinity) return true;
    if (ratePerSecond <= 0) return false;
    const capacity = Math.max(1, ratePerSecond);
    const bucket = this.#buckets.get(key) ?? { tokens: capacity, refilledAtMs: nowMs };
    this.#buckets.set(key, bucket);
    bucket.tokens = Math.min(capacity, bucket.tokens + ((nowMs - bucket.refilledAtMs) / 1000) * ratePerSecond);
    bucket.refilledAtMs = nowMs;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
