/*
 * Every Redis key (and pub/sub channel) talkbatch itself names; BullMQ names its own. Each one starts with
 * `<prefix>:<queue>`, and the default prefix is a hash tag (`{talkbatch}`), so on a Redis Cluster all of a queue's
 * keys, BullMQ's and ours, live in one slot: the Lua scripts that touch several of them at once stay legal there.
 */

/**
 * `held`/`sample`: a sampled batch's rows waiting for approval and why each sampled row was chosen; `credits`: the
 * batch's D-ID balance before its first create and after its last outcome, and the credits its rows used;
 * `charged`: each created talk of a failed row (what it cost, why it failed), by talk id.
 */
export type BatchKeyPart = 'rows' | 'done' | 'failed' | 'active' | 'spent' | 'names' | 'files' | 'finished' | 'held' | 'sample' | 'callbacks' | 'credits' | 'charged';
export type ScheduleKeyPart = 'made' | 'runs' | 'lock';
export type PreviewKeyPart = 'pending' | 'notes';
export type UploadKind = 'image' | 'audio';
/** A render-cache entry's claim: who is making the request now (`claim`) and whether that one is alive (`live`). */
export type RenderCacheKeyPart = 'claim' | 'live';

/** BullMQ queue of schedule ticks beside a talk queue (same prefix, so the same hash tag). */
export function scheduleQueueName(queueName: string): string {
  return `${queueName}-schedules`;
}

/** BullMQ queue of poster and GIF jobs beside a talk queue. */
export function previewQueueName(queueName: string): string {
  return `${queueName}-previews`;
}

export class QueueKeys {
  /** `<prefix>:<queue>`: what every key below starts with. */
  readonly base: string;

  constructor(
    readonly prefix: string,
    readonly queueName: string,
  ) {
    this.base = `${prefix}:${queueName}`;
  }

  /** The batch's hash (createdAt, source, budget, ...), or one of its ledger sets and hashes. */
  batch(batchId: string, part?: BatchKeyPart): string {
    return part ? `${this.base}:batch:${batchId}:${part}` : `${this.base}:batch:${batchId}`;
  }

  /** Sorted set of every batch id, by creation time. */
  batchIndex(): string {
    return `${this.base}:batches`;
  }

  /** Delivery attempts of a row's own webhook. */
  rowWebhooks(batchId: string, rowKey: string): string {
    return `${this.base}:batch:${batchId}:row-webhooks:${rowKey}`;
  }

  previews(batchId: string, part?: PreviewKeyPart): string {
    return part ? `${this.base}:previews:${batchId}:${part}` : `${this.base}:previews:${batchId}`;
  }

  share(token: string): string {
    return `${this.base}:share:${token}`;
  }

  sharesOf(batchId: string): string {
    return `${this.base}:shares:${batchId}`;
  }

  workerHeartbeat(workerId: string): string {
    return `${this.base}:workers:${workerId}`;
  }

  /** Set of job ids whose talks D-ID is rendering now (the adaptive limit's floor). */
  rendering(): string {
    return `${this.base}:rendering`;
  }

  /** Sorted set of the job ids holding a render slot, by when each lease ends (render-slots.ts). */
  renderSlots(): string {
    return `${this.base}:render-slots`;
  }

  /** The render limit every worker follows: D-ID renders at once (adaptive-concurrency.ts lowers and raises it). */
  renderLimit(): string {
    return `${this.base}:render-limit`;
  }

  /** Set while the queue is paused for want of credits, so only that pause is lifted by the credit watch. */
  pausedForCredits(): string {
    return `${this.base}:paused-for-credits`;
  }

  /** Written and waited on (WAIT) before a create, to learn that a replica has the checkpoint. */
  replicaAck(): string {
    return `${this.base}:replica-ack`;
  }

  /** D-ID's URL for a local file already uploaded, by content. */
  upload(kind: UploadKind, sha256: string): string {
    return `${this.base}:uploads:${kind}:${sha256}`;
  }

  /**
   * The render cache (src/worker/render-cache.ts): the verified MP4 of a request, by the request's hash, kept
   * across batches and independent of BullMQ's job retention; or the claim of the row making it now.
   */
  renderCache(requestHash: string, part?: RenderCacheKeyPart): string {
    return part ? `${this.base}:render-cache:${requestHash}:${part}` : `${this.base}:render-cache:${requestHash}`;
  }

  /** Sorted set of render-cache request hashes by when their entry was written (stats, prune --older-than). */
  renderCacheIndex(): string {
    return `${this.base}:render-cache-index`;
  }

  /** Hash of render-cache counters: hits, misses, bypassed, dropped. */
  renderCacheStats(): string {
    return `${this.base}:render-cache-stats`;
  }

  /** Pub/sub channel on which a freed render slot is announced to every worker (render-slots.ts). */
  slotFreedChannel(): string {
    return `${this.base}:slot-freed`;
  }

  /** Pub/sub channel a webhook publishes a job id on to wake the worker waiting for it. */
  wakeChannel(): string {
    return `${this.base}:wake`;
  }

  schedule(name: string, part: ScheduleKeyPart): string {
    return `${this.prefix}:${scheduleQueueName(this.queueName)}:schedule:${name}:${part}`;
  }
}

export function queueKeys(prefix: string, queueName: string): QueueKeys {
  return new QueueKeys(prefix, queueName);
}
