import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { ConfigError } from '../shared/errors.js';
import { ENV_SCHEMA, type Config, type EnvInput, type EnvName } from './schema.js';

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

  const parsed = ENV_SCHEMA.safeParse(raw as EnvInput);
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
  return Object.freeze({
    didApiKey: v.DID_API_KEY,
    didApiUrl: v.DID_API_URL.replace(/\/+$/, ''),
    elevenLabsApiKey: v.DID_ELEVENLABS_API_KEY,
    redisUrl: v.REDIS_URL,
    outDir: resolve(v.TALKBATCH_OUT_DIR),
    queueName: v.TALKBATCH_QUEUE,
    prefix: v.TALKBATCH_PREFIX,
    concurrency: v.TALKBATCH_CONCURRENCY,
    workerConcurrency: v.TALKBATCH_WORKER_CONCURRENCY ?? v.TALKBATCH_CONCURRENCY,
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
    outboundAllow: Object.freeze(v.TALKBATCH_OUTBOUND_ALLOW ?? []),
    previews: v.TALKBATCH_PREVIEWS,
    posterAtSeconds: v.TALKBATCH_POSTER_AT,
    ffmpegPath: v.TALKBATCH_FFMPEG,
    shareBaseUrl: (v.TALKBATCH_SHARE_URL ?? v.TALKBATCH_PUBLIC_URL)?.replace(/\/+$/, ''),
  });
}

export { ENV_SCHEMA, SECRET_ENV_NAMES, type Config, type EnvName } from './schema.js';
