import { z } from 'zod';

const emptyToUndefined = (value: unknown): unknown => (typeof value === 'string' && value.trim() === '' ? undefined : value);
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(emptyToUndefined, z.coerce.number().int().min(min).max(max).default(fallback));
const optionalString = z.preprocess(emptyToUndefined, z.string().optional());
const bool = (fallback: boolean) =>
  z.preprocess(emptyToUndefined, z.stringbool({ truthy: ['true', '1', 'yes', 'on'], falsy: ['false', '0', 'no', 'off'] }).default(fallback));

/** A value sent in an HTTP header: a line break or control character in it can never work, so it stops at startup. */
const headerSafe = z.string().regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces, line breaks or control characters (check for a stray \\r from a Windows .env file)');
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
const redisUrl = z
  .string()
  .refine(
    (value) => /^(rediss?|redis\+unix|unix|rediss?\+cluster|rediss?\+sentinel):\/\//.test(value) || value.startsWith('/'),
    'must be a redis://, rediss://, redis+cluster://, redis+sentinel:// URL, or a unix socket path',
  );

/**
 * Every setting talkbatch reads, keyed by its environment variable. This table is the single place
 * where variable names appear. The README's config table is written by hand; test/unit/readme-config.test.ts
 * fails when a variable is missing from either side or a default differs.
 */
export const ENV_SCHEMA = z.object({
  DID_API_KEY: optionalString,
  DID_API_USERNAME: optionalString,
  DID_API_PASSWORD: optionalString,
  DID_API_URL: z.preprocess(emptyToUndefined, httpUrl.default('https://api.d-id.com')),
  DID_ELEVENLABS_API_KEY: z.preprocess(emptyToUndefined, headerSafe.optional()),
  REDIS_URL: z.preprocess(emptyToUndefined, redisUrl.optional()),
  REDIS_CLUSTER_NODES: optionalString,
  REDIS_SENTINELS: optionalString,
  REDIS_SENTINEL_NAME: optionalString,
  REDIS_SENTINEL_PASSWORD: optionalString,
  REDIS_USERNAME: optionalString,
  REDIS_PASSWORD: optionalString,
  REDIS_TLS: z.preprocess(emptyToUndefined, bool(false)),
  TALKBATCH_OUT_DIR: z.preprocess(emptyToUndefined, z.string().default('out')),
  TALKBATCH_QUEUE: z.preprocess(emptyToUndefined, z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only').default('talks')),
  TALKBATCH_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[^:\s]+$/, 'must not contain ":" or spaces').default('{talkbatch}')),
  TALKBATCH_CONCURRENCY: int(1, 1000, 4),
  TALKBATCH_WORKER_CONCURRENCY: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(1000).optional()),
  TALKBATCH_ATTEMPTS: int(1, 100, 8),
  TALKBATCH_POLL_INITIAL_MS: int(50, 600_000, 1_000),
  TALKBATCH_POLL_MAX_MS: int(50, 600_000, 5_000),
  TALKBATCH_RENDER_TIMEOUT_MS: int(1_000, 86_400_000, 20 * 60_000),
  TALKBATCH_HTTP_TIMEOUT_MS: int(100, 600_000, 30_000),
  TALKBATCH_DOWNLOAD_TIMEOUT_MS: int(1_000, 3_600_000, 5 * 60_000),
  TALKBATCH_RECONCILE_WINDOW: int(10, 100_000, 1_000),
  TALKBATCH_CREDIT_CHECK_MS: int(1_000, 3_600_000, 60_000),
  TALKBATCH_KEEP_JOBS_HOURS: int(1, 24 * 365, 24 * 14),
  TALKBATCH_SHUTDOWN_TIMEOUT_MS: int(1_000, 600_000, 30_000),
  TALKBATCH_LOCK_MS: int(1_000, 600_000, 30_000),
  TALKBATCH_STALLED_INTERVAL_MS: int(500, 600_000, 30_000),
  TALKBATCH_MAX_STALLED: int(1, 1_000, 25),
  TALKBATCH_FETCH_WATCHDOG_MS: int(5_000, 3_600_000, 60_000),
  DOCKER_HOST: optionalString,
  TALKBATCH_LOG_LEVEL: z.preprocess(emptyToUndefined, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  TALKBATCH_LOG_PRETTY: z.preprocess(emptyToUndefined, bool(false).optional()),
  TALKBATCH_PUBLIC_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^https$/, error: 'must be an https URL (D-ID only calls https webhooks)' }).optional()),
  TALKBATCH_WEBHOOK_SECRET: z.preprocess(emptyToUndefined, z.string().min(16, 'must be at least 16 characters').optional()),
  TALKBATCH_API_KEYS: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value) => value.split(',').map((key) => key.trim()).filter(Boolean))
      .pipe(z.array(z.string().min(16, 'each key must be at least 16 characters').regex(/^[\x21-\x7e]+$/, 'each key must be printable ASCII without spaces or control characters')))
      .optional(),
  ),
  TALKBATCH_HOST: z.preprocess(emptyToUndefined, z.string().default('127.0.0.1')),
  TALKBATCH_PORT: int(0, 65_535, 8080),
  TALKBATCH_DASHBOARD_WRITE: z.preprocess(emptyToUndefined, bool(false)),
  TALKBATCH_CALLBACK_SECRET: z.preprocess(emptyToUndefined, z.string().min(16, 'must be at least 16 characters').optional()),
  TALKBATCH_MAX_BODY_BYTES: int(1_024, 1_073_741_824, 50 * 1024 * 1024),
  TALKBATCH_API_MAX_CONCURRENT_UPLOADS: int(1, 1_000, 4),
  TALKBATCH_LOCAL_MEDIA_DIRS: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value) => value.split(',').map((dir) => dir.trim()).filter(Boolean))
      .pipe(z.array(z.string().refine((dir) => dir.startsWith('/'), 'each folder must be an absolute path')))
      .optional(),
  ),
  TALKBATCH_UPLOAD_TTL_MS: int(60_000, 24 * 60 * 60_000, 20 * 60 * 60_000),
  TALKBATCH_RENDER_CACHE_CLAIM_MS: int(1_000, 600_000, 30_000),
  TALKBATCH_OUTBOUND_ALLOW: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .transform((value) => value.split(',').map((entry) => entry.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(/^(?:\[[0-9a-fA-F:.]+\]|[^\s/:@?#[\]]+|[0-9a-fA-F:.]+)(?::\d{1,5})?$/, 'each entry must be a host name or IP address, optionally with :port')))
      .optional(),
  ),
  TALKBATCH_PREVIEWS: z.preprocess(emptyToUndefined, bool(true)),
  TALKBATCH_POSTER_AT: z.preprocess(emptyToUndefined, z.coerce.number().min(0).max(3_600).default(1)),
  TALKBATCH_FFMPEG: z.preprocess(emptyToUndefined, z.string().default('ffmpeg')),
  TALKBATCH_SHARE_URL: z.preprocess(emptyToUndefined, httpUrl.optional()),
});

export type EnvInput = z.input<typeof ENV_SCHEMA>;
export type EnvName = keyof typeof ENV_SCHEMA.shape;

/** Names whose values are secrets: never printed, not even in validation errors. */
export const SECRET_ENV_NAMES: ReadonlySet<EnvName> = new Set(['DID_API_KEY', 'DID_API_USERNAME', 'DID_API_PASSWORD', 'DID_ELEVENLABS_API_KEY', 'TALKBATCH_WEBHOOK_SECRET', 'TALKBATCH_API_KEYS', 'TALKBATCH_CALLBACK_SECRET', 'REDIS_URL', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD']);

export interface Config {
  /** D-ID's key as it goes after `Basic ` (`<user>:<secret>`), whichever form it was given in. */
  readonly didApiKey: string | undefined;
  readonly didApiUrl: string;
  readonly elevenLabsApiKey: string | undefined;
  /**
   * Where Redis is: REDIS_URL as given, or a `redis+cluster://` / `redis+sentinel://` URL built from
   * REDIS_CLUSTER_NODES or REDIS_SENTINELS (see src/queue/connections.ts).
   */
  readonly redisUrl: string | undefined;
  readonly outDir: string;
  readonly queueName: string;
  readonly prefix: string;
  /** Renders in flight across every worker of the queue (BullMQ global concurrency). */
  readonly concurrency: number;
  /** Jobs one worker process runs at once; defaults to `concurrency`. */
  readonly workerConcurrency: number;
  readonly attempts: number;
  readonly pollInitialMs: number;
  readonly pollMaxMs: number;
  readonly renderTimeoutMs: number;
  readonly httpTimeoutMs: number;
  readonly downloadTimeoutMs: number;
  readonly reconcileWindow: number;
  readonly creditCheckMs: number;
  readonly keepJobsHours: number;
  readonly shutdownTimeoutMs: number;
  /** A worker that has not renewed a job's lock for this long is presumed dead and its job is taken over. */
  readonly lockMs: number;
  readonly stalledIntervalMs: number;
  /** How often one job may be taken over from a dead worker before it fails. Steps are checkpointed, so high is safe. */
  readonly maxStalled: number;
  /** A worker with free slots that took no row for this long while rows wait is replaced in-process. */
  readonly fetchWatchdogMs: number;
  readonly dockerHost: string | undefined;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly logPretty: boolean | undefined;
  readonly publicUrl: string | undefined;
  readonly webhookSecret: string | undefined;
  /** Bearer keys accepted by the REST API and dashboard of `talkbatch serve`. */
  readonly apiKeys: readonly string[];
  readonly host: string;
  readonly port: number;
  /** Whether the dashboard may retry/remove jobs (read-only by default). */
  readonly dashboardWrite: boolean;
  /** Signs batch-finished callbacks (HMAC-SHA256); defaults to the webhook secret. */
  readonly callbackSecret: string | undefined;
  readonly maxBodyBytes: number;
  /** `POST /v1/batches` requests read and taken in at once by one server; more are answered 503 at once. */
  readonly maxConcurrentUploads: number;
  /** Folders a manifest sent through the REST API may name local images/audio in; none by default. */
  readonly localMediaDirs: readonly string[];
  /** How long an uploaded file's D-ID URL is reused; below D-ID's 24-48 h storage time. */
  readonly uploadTtlMs: number;
  /** How long a render-cache claim outlives its worker's last renewal before an identical row takes it over. */
  readonly renderCacheClaimMs: number;
  /** Hosts (name or IP, optionally :port) that requests made on a user's behalf may reach although they are not public. */
  readonly outboundAllow: readonly string[];
  /** Make `<name>.jpg` and `<name>.gif` next to each video (when ffmpeg is there). */
  readonly previews: boolean;
  /** Where in the video the poster frame is taken, in seconds. */
  readonly posterAtSeconds: number;
  /** The ffmpeg program previews are made with: a command name on PATH or a path. */
  readonly ffmpegPath: string;
  /** Base of share-page links in results (TALKBATCH_SHARE_URL, else TALKBATCH_PUBLIC_URL); none: no share links. */
  readonly shareBaseUrl: string | undefined;
}
