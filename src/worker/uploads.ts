import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { RedisClient } from '../queue/connections.js';
import { UPLOAD_MAX_BYTES } from '../did/schemas.js';
import type { DidClient, RequestOptions } from '../did/client.js';
import { isImageBytes } from '../manifest/local-media.js';
import { OutboundRefusedError, outboundFetch, type OutboundPolicy } from '../net/outbound.js';
import { sleep } from '../shared/clock.js';
import type { QueueKeys } from '../queue/keys.js';

/*
 * Local files go to D-ID once per distinct content: the file's sha256 names a Redis key (under the queue's
 * hash-tagged prefix) holding the URL D-ID answered, kept for less than D-ID's 24-48 h storage time. A row
 * whose file was uploaded before reuses the URL; after the TTL the file is uploaded again. The key is written
 * right after the upload and before the create, so a crash in between costs at most one more upload, and the
 * create itself keeps its own checkpoint (never a second talk).
 */

export type UploadKind = 'image' | 'audio';

/** A local file that cannot be uploaded: missing, grown past D-ID's limit. The row fails; retrying cannot help. */
export class LocalFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LocalFileError';
  }
}

/** How long one worker may hold the upload of a content before another takes over. */
const LOCK_MS = 60_000;
const LOCK_POLL_MS = 200;
/** How long a share link's fetched image is reused by the next ask for the same link. */
const LINK_REUSE_MS = 10_000;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png',
  mp3: 'audio/mpeg', wav: 'audio/wav', flac: 'audio/flac', m4a: 'audio/mp4', mp4: 'audio/mp4',
};

export class UploadCache {
  readonly #redis: RedisClient;
  readonly #keys: QueueKeys;
  readonly #ttlMs: number;
  readonly #did: DidClient;
  readonly #inFlight = new Map<string, Promise<string>>();
  readonly #links = new Map<string, { bytes: Promise<Buffer>; at: number }>();

  constructor(options: { redis: RedisClient; keys: QueueKeys; ttlMs: number; did: DidClient }) {
    this.#redis = options.redis;
    this.#keys = options.keys;
    this.#ttlMs = options.ttlMs;
    this.#did = options.did;
  }

  /** The Redis key that holds the D-ID URL of a file with this content. */
  keyFor(kind: UploadKind, sha256: string): string {
    return this.#keys.upload(kind, sha256);
  }

  /**
   * A share link's image: fetched only from public addresses (outboundFetch), at most D-ID's image limit, checked
   * to be a JPEG or PNG by its bytes, then uploaded like a local file (once per content).
   */
  async urlForLink(link: string, policy: OutboundPolicy, options: RequestOptions & { timeoutMs: number }): Promise<string> {
    const bytes = await this.linkImage(link, policy, options);
    return this.urlForBytes('image', bytes, link.toLowerCase().includes('.png') ? 'x.png' : 'x.jpg', options);
  }

  /**
   * The image bytes behind a share link, checked as urlForLink checks them. A fetch is shared for a few seconds,
   * so the render cache hashing the image (src/worker/render-cache.ts) and the upload right after it fetch once.
   */
  linkImage(link: string, policy: OutboundPolicy, options: RequestOptions & { timeoutMs: number }): Promise<Buffer> {
    const now = Date.now();
    for (const [key, fetched] of this.#links) if (now - fetched.at > LINK_REUSE_MS) this.#links.delete(key);
    const known = this.#links.get(link);
    if (known) return known.bytes;
    const bytes = fetchLinkImage(link, policy, options);
    this.#links.set(link, { bytes, at: now });
    bytes.catch(() => this.#links.delete(link));
    return bytes;
  }

  /** D-ID's URL for the file: reused while remembered, else uploaded (and remembered). */
  async urlFor(kind: UploadKind, path: string, options: RequestOptions = {}): Promise<string> {
    return this.urlForBytes(kind, await readLocal(kind, path), path, options);
  }

  async urlForBytes(kind: UploadKind, bytes: Buffer, path: string, options: RequestOptions = {}): Promise<string> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const key = this.keyFor(kind, sha256);
    // Rows of one sheet often share a photo and run at once: one upload per content, in this process and across workers.
    const running = this.#inFlight.get(key);
    if (running) return running;
    const upload = this.#uploadOnce(kind, path, bytes, key, options).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, upload);
    return upload;
  }

  async #uploadOnce(kind: UploadKind, path: string, bytes: Buffer, key: string, options: RequestOptions): Promise<string> {
    const lockKey = `${key}:lock`;
    for (let waited = 0; ; waited += LOCK_POLL_MS) {
      const known = await this.#redis.get(key);
      if (known) return known;
      // Another worker uploading the same content holds the lock; past the wait (it died), upload anyway.
      if ((await this.#redis.set(lockKey, '1', 'PX', LOCK_MS, 'NX')) === 'OK' || waited >= LOCK_MS) break;
      await sleep(LOCK_POLL_MS, options.signal);
    }
    try {
      return await this.#upload(kind, path, bytes, key, options);
    } finally {
      await this.#redis.del(lockKey);
    }
  }

  async #upload(kind: UploadKind, path: string, bytes: Buffer, key: string, options: RequestOptions): Promise<string> {
    const extension = /\.([A-Za-z0-9]+)$/.exec(path)?.[1]?.toLowerCase() ?? '';
    const type = CONTENT_TYPES[extension] ?? (kind === 'image' ? 'image/jpeg' : 'audio/mpeg');
    const name = kind === 'image' ? `image.${type === 'image/png' ? 'png' : 'jpg'}` : `audio.${extension || 'mp3'}`;
    const uploaded = await this.#did.upload(kind, { bytes, name, type }, options);
    await this.#redis.set(key, uploaded.url, 'PX', this.#ttlMs);
    return uploaded.url;
  }
}

async function fetchLinkImage(link: string, policy: OutboundPolicy, options: RequestOptions & { timeoutMs: number }): Promise<Buffer> {
  let bytes: Buffer;
  try {
    const { response } = await outboundFetch(new URL(link), { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) }, policy);
    if (!response.ok) {
      await response.body?.cancel();
      throw new LocalFileError(`image link ${new URL(link).origin} answered HTTP ${response.status}`);
    }
    bytes = await readCapped(response.body, UPLOAD_MAX_BYTES.image);
  } catch (error) {
    if (error instanceof LocalFileError) throw error;
    if (error instanceof OutboundRefusedError) throw new LocalFileError(`image link refused (${error.reason}): only public http(s) addresses are fetched`);
    throw error;
  }
  if (!isImageBytes(bytes)) throw new LocalFileError(`image link ${new URL(link).origin} does not serve a JPEG or PNG image (a share page rather than the file?)`);
  return bytes;
}

/** A response body (undici types its chunks as any; they are bytes), refused as soon as it passes `max` bytes. */
async function readCapped(body: ReadableStream<Uint8Array> | null, max: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body?.getReader();
  if (!reader) return Buffer.alloc(0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new LocalFileError(`image link serves more than ${max} bytes (D-ID's image limit)`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

async function readLocal(kind: UploadKind, path: string): Promise<Buffer> {
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new LocalFileError(`${path} is not a file`);
    size = info.size;
  } catch (error) {
    if (error instanceof LocalFileError) throw error;
    throw new LocalFileError(`local ${kind} ${path} cannot be read (${(error as { code?: string }).code ?? String(error)})`);
  }
  // Checked by validate, but the file may have changed since: never read more than D-ID would take.
  if (size > UPLOAD_MAX_BYTES[kind]) throw new LocalFileError(`local ${kind} ${path} has ${size} bytes; D-ID takes at most ${UPLOAD_MAX_BYTES[kind]}`);
  return readFile(path);
}
