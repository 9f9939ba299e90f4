import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';

/**
 * Makes a checkpoint survive a failover before money depends on it. Behind Sentinel, writes reach the
 * replica asynchronously: a primary killed right after a row's "create in flight" checkpoint may take
 * that checkpoint with it, the promoted replica would hand the row out as never started, and the next
 * try would create (and pay for) the talk again without looking for the first one. So before a create,
 * the worker asks the primary to confirm a replica holds everything written so far (WAIT).
 *
 * WAIT only covers the writes of the connection that sends it, so this connection first writes a marker
 * of its own: the primary's replication stream is ordered, so a replica that acknowledged the marker
 * holds every checkpoint written before it, from any connection.
 */
export class ReplicaAck {
  readonly #redis: Redis;
  readonly #markerKey: string;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  #replicasCheckedAt = 0;
  #replicas = 0;
  #warnedAlone = false;

  constructor(options: { redis: Redis; markerKey: string; timeoutMs: number; logger: Logger }) {
    this.#redis = options.redis;
    this.#markerKey = options.markerKey;
    this.#timeoutMs = options.timeoutMs;
    this.#logger = options.logger;
  }

  /**
   * True when a replica holds every write made before the call, or when the primary has no replica to
   * wait for (nothing could be promoted over it). False when replicas are attached but none confirmed in
   * time: the caller should not pay for anything that depends on the unconfirmed writes.
   */
  async confirm(): Promise<boolean> {
    if ((await this.#connectedReplicas()) === 0) return true;
    await this.#redis.set(this.#markerKey, String(Date.now()), 'PX', 60_000);
    const acked = Number(await this.#redis.call('WAIT', '1', String(this.#timeoutMs)));
    return acked >= 1;
  }

  async #connectedReplicas(): Promise<number> {
    if (Date.now() - this.#replicasCheckedAt < REPLICA_CHECK_EVERY_MS) return this.#replicas;
    const info = await this.#redis.info('replication');
    this.#replicas = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? '0');
    this.#replicasCheckedAt = Date.now();
    if (this.#replicas === 0 && !this.#warnedAlone) {
      this.#warnedAlone = true;
      this.#logger.warn('the Redis primary has no replica attached: a failover now could lose checkpoints');
    } else if (this.#replicas > 0) {
      this.#warnedAlone = false;
    }
    return this.#replicas;
  }

  close(): void {
    this.#redis.disconnect();
  }
}

const REPLICA_CHECK_EVERY_MS = 2_000;
