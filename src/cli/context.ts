import { loadConfig, type Config, type EnvName } from '../config/index.js';
import { ensureRedis, type RedisHandle } from './local-redis.js';
import { createLogger, type Logger } from '../shared/logger.js';

export interface GlobalFlags {
  quiet?: boolean;
  verbose?: boolean;
  'redis-url'?: string;
  out?: string;
  concurrency?: string;
  queue?: string;
}

export const GLOBAL_OPTIONS = {
  'redis-url': { type: 'string' },
  out: { type: 'string' },
  concurrency: { type: 'string' },
  queue: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const GLOBAL_HELP = `Global options:
  --redis-url URL        Redis to use (default: $REDIS_URL, else a private redis-server)
  --out DIR              where videos and reports go (default: $TALKBATCH_OUT_DIR or ./out)
  --concurrency N        renders in flight across all workers (default: $TALKBATCH_CONCURRENCY or 4)
  --queue NAME           queue name (default: talks)
  -q, --quiet            only errors
  -v, --verbose          debug logs
  -h, --help             this help`;

export function configFromFlags(flags: GlobalFlags, extra: Partial<Record<EnvName, string | number | undefined>> = {}): Config {
  return loadConfig({
    overrides: {
      REDIS_URL: flags['redis-url'],
      TALKBATCH_OUT_DIR: flags.out,
      TALKBATCH_CONCURRENCY: flags.concurrency,
      TALKBATCH_QUEUE: flags.queue,
      ...(flags.quiet ? { TALKBATCH_LOG_LEVEL: 'error' } : flags.verbose ? { TALKBATCH_LOG_LEVEL: 'debug' } : {}),
      ...extra,
    },
  });
}

export function loggerFor(config: Config): Logger {
  return createLogger({ level: config.logLevel, pretty: config.logPretty ?? stderrIsTty() });
}

/** Node's types say stderr is always a terminal stream; when it is piped or a file, isTTY is undefined. */
export function stderrIsTty(): boolean {
  return (process.stderr.isTTY as boolean | undefined) === true;
}

/** REDIS_URL, or a private redis-server for this command (see ensureRedis), announced on stderr. */
export function redisFor(config: Config): Promise<RedisHandle> {
  return ensureRedis({ redisUrl: config.redisUrl, dockerHost: config.dockerHost, announce: (message) => process.stderr.write(`${message}\n`) });
}

/** Runs `fn` until it returns; the first SIGINT/SIGTERM calls `onSignal`, a second one exits at once. */
export function onStopSignals(onSignal: (signal: NodeJS.Signals) => void): () => void {
  let received = 0;
  const handler = (signal: NodeJS.Signals): void => {
    received += 1;
    if (received > 1) {
      process.stderr.write(`\n${signal} again: stopping now\n`);
      process.exit(130);
    }
    process.stderr.write(`\n${signal}: finishing work in hand (send ${signal} again to stop at once)\n`);
    onSignal(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
