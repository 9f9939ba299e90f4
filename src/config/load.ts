import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { ConfigError } from '../shared/errors.js';
import { parseRedisTarget, topologyUrl } from '../queue/connections.js';
import { headroomFor } from '../queue/render-slots.js';
import { ENV_SCHEMA, type Config, type EnvName } from './schema.js';

export interface LoadConfigOptions {
  /** Defaults to `process.env`; tests pass a plain object. */
  env?: Record<string, string | undefined>;
  /** Values from command-line flags, keyed by variable name; they win over the environment. */
  overrides?: Partial<Record<EnvName, string | number | boolean | undefined>>;
  /** Path of a dotenv file read when present; `false` reads none. Defaults to `.env` in the cwd. */
  dotenvPath?: string | false;
}

/** The one place that reads the environment. Precedence: defaults < .env < environment < flags. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const dotenvPath = options.dotenvPath === undefined ? resolve('.env') : options.dotenvPath;
  const fromFile = dotenvPath !== false && existsSync(dotenvPath) ? parseDotenv(readFileSync(dotenvPath)) : {};

  const raw: Record<string, unknown> = {};
  for (const name of Object.keys(ENV_SCHEMA.shape) as EnvName[]) {
    const override = options.overrides?.[name];
    raw[name] = override !== undefined ? String(override) : (env[name] ?? fromFile[name]);
  }

  const parsed = ENV_SCHEMA.safeParse(raw);
  if (!parsed.success) {
    // Only the variable name and the rule it broke: a value may be a secret.
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(issues);
  }
  const v = parsed.data;
  if (v.TALKBATCH_PUBLIC_URL && !v.TALKBATCH_WEBHOOK_SECRET) {
    throw new ConfigError(['TALKBATCH_WEBHOOK_SECRET: required when TALKBATCH_PUBLIC_URL is set (it signs the webhook URLs)']);
  }
  if (v.TALKBATCH_POLL_MAX_MS < v.TALKBATCH_POLL_INITIAL_MS) {
    throw new ConfigError(['TALKBATCH_POLL_MAX_MS: must be at least TALKBATCH_POLL_INITIAL_MS']);
  }
  const redisUrl = resolveRedisUrl(v);
  return Object.freeze({
    didApiKey: didApiKeyFrom(v.DID_API_KEY, v.DID_API_USERNAME, v.DID_API_PASSWORD),
    didApiUrl: v.DID_API_URL.replace(/\/+$/, ''),
    elevenLabsApiKey: v.DID_ELEVENLABS_API_KEY,
    redisUrl,
    outDir: resolve(v.TALKBATCH_OUT_DIR),
    queueName: v.TALKBATCH_QUEUE,
    prefix: v.TALKBATCH_PREFIX,
    concurrency: v.TALKBATCH_CONCURRENCY,
    // Room for the rows downloading or ready to create beside those rendering (queue/render-slots.ts).
    workerConcurrency: v.TALKBATCH_WORKER_CONCURRENCY ?? v.TALKBATCH_CONCURRENCY + headroomFor(v.TALKBATCH_CONCURRENCY),
    attempts: v.TALKBATCH_ATTEMPTS,
    pollInitialMs: v.TALKBATCH_POLL_INITIAL_MS,
    pollMaxMs: v.TALKBATCH_POLL_MAX_MS,
    renderTimeoutMs: v.TALKBATCH_RENDER_TIMEOUT_MS,
    httpTimeoutMs: v.TALKBATCH_HTTP_TIMEOUT_MS,
    downloadTimeoutMs: v.TALKBATCH_DOWNLOAD_TIMEOUT_MS,
    reconcileWindow: v.TALKBATCH_RECONCILE_WINDOW,
    creditCheckMs: v.TALKBATCH_CREDIT_CHECK_MS,
    keepJobsHours: v.TALKBATCH_KEEP_JOBS_HOURS,
    shutdownTimeoutMs: v.TALKBATCH_SHUTDOWN_TIMEOUT_MS,
    lockMs: v.TALKBATCH_LOCK_MS,
    stalledIntervalMs: v.TALKBATCH_STALLED_INTERVAL_MS,
    maxStalled: v.TALKBATCH_MAX_STALLED,
    fetchWatchdogMs: v.TALKBATCH_FETCH_WATCHDOG_MS,
    dockerHost: v.DOCKER_HOST,
    logLevel: v.TALKBATCH_LOG_LEVEL,
    logPretty: v.TALKBATCH_LOG_PRETTY,
    publicUrl: v.TALKBATCH_PUBLIC_URL,
    webhookSecret: v.TALKBATCH_WEBHOOK_SECRET,
    apiKeys: v.TALKBATCH_API_KEYS ?? [],
    host: v.TALKBATCH_HOST,
    port: v.TALKBATCH_PORT,
    dashboardWrite: v.TALKBATCH_DASHBOARD_WRITE,
    callbackSecret: v.TALKBATCH_CALLBACK_SECRET ?? v.TALKBATCH_WEBHOOK_SECRET,
    maxBodyBytes: v.TALKBATCH_MAX_BODY_BYTES,
    maxConcurrentUploads: v.TALKBATCH_API_MAX_CONCURRENT_UPLOADS,
    localMediaDirs: v.TALKBATCH_LOCAL_MEDIA_DIRS ?? [],
    uploadTtlMs: v.TALKBATCH_UPLOAD_TTL_MS,
    renderCacheClaimMs: v.TALKBATCH_RENDER_CACHE_CLAIM_MS,
    outboundAllow: Object.freeze(v.TALKBATCH_OUTBOUND_ALLOW ?? []),
    previews: v.TALKBATCH_PREVIEWS,
    posterAtSeconds: v.TALKBATCH_POSTER_AT,
    ffmpegPath: v.TALKBATCH_FFMPEG,
    shareBaseUrl: (v.TALKBATCH_SHARE_URL ?? v.TALKBATCH_PUBLIC_URL)?.replace(/\/+$/, ''),
  });
}

/** What may stand in an Authorization header after `Basic `: visible ASCII, no spaces (RFC 9110 token68 and D-ID's `user:secret`). */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

/**
 * The key in the form D-ID takes, from any reasonable way of pasting it: surrounding whitespace (a trailing newline
 * from a file) trimmed, a pasted `Basic ` prefix removed, or `DID_API_USERNAME` + `DID_API_PASSWORD` as D-ID Studio
 * shows them. A value no HTTP header can carry is a config error naming the variable, before any row is touched;
 * the value itself is never printed.
 */
function didApiKeyFrom(key: string | undefined, username: string | undefined, password: string | undefined): string | undefined {
  if (key !== undefined) {
    const bare = key.trim().replace(/^(?:basic(?:\s+|$))+/i, '').trim();
    if (bare === '') throw new ConfigError(['DID_API_KEY: holds only "Basic"; paste the key that follows it']);
    if (!HEADER_SAFE.test(bare)) {
      throw new ConfigError(['DID_API_KEY: contains spaces, line breaks or non-ASCII characters, so it cannot be sent in an Authorization header (paste the key exactly as D-ID shows it)']);
    }
    return bare;
  }
  if (username === undefined && password === undefined) return undefined;
  if (username === undefined) throw new ConfigError(['DID_API_USERNAME: required with DID_API_PASSWORD (D-ID shows both with the key)']);
  if (password === undefined) throw new ConfigError(['DID_API_PASSWORD: required with DID_API_USERNAME (D-ID shows both with the key)']);
  for (const [name, value] of [['DID_API_USERNAME', username.trim()], ['DID_API_PASSWORD', password.trim()]] as const) {
    if (!HEADER_SAFE.test(value) || (name === 'DID_API_USERNAME' && value.includes(':'))) {
      throw new ConfigError([`${name}: contains characters that cannot be sent in an Authorization header (paste it exactly as D-ID shows it)`]);
    }
  }
  return `${username.trim()}:${password.trim()}`;
}

export { ENV_SCHEMA, SECRET_ENV_NAMES, type Config, type EnvName } from './schema.js';

type ParsedEnv = ReturnType<typeof ENV_SCHEMA.parse>;

/**
 * REDIS_URL, or the topology URL built from REDIS_CLUSTER_NODES / REDIS_SENTINELS and their
 * credentials. On a Cluster every key must share one slot, so the prefix must hold a hash tag.
 */
function resolveRedisUrl(v: ParsedEnv): string | undefined {
  const given = [v.REDIS_URL && 'REDIS_URL', v.REDIS_CLUSTER_NODES && 'REDIS_CLUSTER_NODES', v.REDIS_SENTINELS && 'REDIS_SENTINELS'].filter(Boolean);
  if (given.length > 1) throw new ConfigError([`${given.join(', ')}: set only one of them`]);
  if (v.REDIS_SENTINELS && !v.REDIS_SENTINEL_NAME) throw new ConfigError(['REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the master name the Sentinels monitor)']);
  const credentials = { tls: v.REDIS_TLS, username: v.REDIS_USERNAME, password: v.REDIS_PASSWORD };
  let url: string | undefined;
  try {
    if (v.REDIS_CLUSTER_NODES) url = topologyUrl('cluster', v.REDIS_CLUSTER_NODES, credentials);
    else if (v.REDIS_SENTINELS)
      url = topologyUrl('sentinel', v.REDIS_SENTINELS, { ...credentials, name: v.REDIS_SENTINEL_NAME, sentinelPassword: v.REDIS_SENTINEL_PASSWORD });
    else url = v.REDIS_URL;
    if (url && parseRedisTarget(url).kind === 'cluster' && !/\{[^{}]+\}/.test(v.TALKBATCH_PREFIX)) {
      throw new Error('TALKBATCH_PREFIX: on a Redis Cluster it must hold a hash tag such as {talkbatch}, so every key lands in one slot');
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    // Messages name the variable and the rule, never a password.
    throw new ConfigError([error instanceof Error ? error.message : String(error)]);
  }
  return url;
}
