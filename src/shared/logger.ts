import { pino, destination, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths that may hold secrets. Keys are also scrubbed from free text by the D-ID client itself,
 * so this is the second fence, not the only one.
 */
const REDACT_PATHS = [
  'apiKey',
  'config.didApiKey',
  'didApiKey',
  'headers.authorization',
  'headers["x-api-key-external"]',
  'req.headers.authorization',
  'webhookSecret',
  '*.apiKey',
  '*.didApiKey',
  '*.webhookSecret',
  '*.authorization',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  pretty?: boolean;
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const base = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { app: 'talkbatch' } };
  if (options.pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,app', destination: 2 } },
    });
  }
  return pino(base, options.destination ?? destination(2));
}

export const silentLogger: Logger = pino({ level: 'silent' });
