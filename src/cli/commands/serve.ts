import { parseArgs } from 'node:util';
import { redactRedisUrl } from '../../queue/connections.js';
import { startServer } from '../../server/start.js';
import { UsageError } from '../../shared/errors.js';
import { PREVIEW_HELP, PREVIEW_OPTIONS, previewOverrides } from '../preview-flags.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS, loggerFor, onStopSignals, redisFor } from '../context.js';
import { startScheduleWorker } from '../../schedules/worker.js';

export const SERVE_HELP = `Usage: talkbatch serve [options]

Runs the HTTP server: the D-ID webhook receiver (/webhooks/did/...), the REST API (/v1/batches...),
the bull-board dashboard (/admin), Prometheus metrics (/metrics), /healthz and /readyz, and an
OpenAPI document (/openapi.json). Everything but /healthz, /readyz and the webhook needs
"Authorization: Bearer <key>" with one of TALKBATCH_API_KEYS; without keys the API refuses all calls.
See docs/api.md.

Webhooks: set TALKBATCH_PUBLIC_URL (https, how D-ID reaches this server) and TALKBATCH_WEBHOOK_SECRET;
workers then give D-ID signed webhook URLs, and this server wakes the waiting rows.

Options:
  --host HOST            address to listen on (default: $TALKBATCH_HOST or 127.0.0.1)
  --port N               port (default: $TALKBATCH_PORT or 8080; 0 picks a free one)
  --with-worker          also process jobs in this process (one process does everything)
  --worker-concurrency N with --with-worker: jobs this process runs at once
${PREVIEW_HELP}
${GLOBAL_HELP}

Without REDIS_URL a private redis-server is started for this process: fine to try things locally, but
other workers cannot reach it and it is gone when the server stops.`;

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...GLOBAL_OPTIONS,
      host: { type: 'string' },
      port: { type: 'string' },
      'with-worker': { type: 'boolean' },
      'worker-concurrency': { type: 'string' },
      ...PREVIEW_OPTIONS,
    },
  });
  if (values.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const config = configFromFlags(values, {
    TALKBATCH_HOST: values.host,
    TALKBATCH_PORT: values.port,
    TALKBATCH_WORKER_CONCURRENCY: values['worker-concurrency'],
    ...previewOverrides(values),
  });
  const withWorker = values['with-worker'] === true;
  if (withWorker && !config.didApiKey) throw new UsageError('DID_API_KEY is not set: --with-worker needs it to make videos');
  const logger = loggerFor(config);
  if (config.apiKeys.length === 0) logger.warn('TALKBATCH_API_KEYS is not set: the REST API, dashboard and /metrics refuse every request');
  if (!config.webhookSecret || !config.didApiKey) logger.info('webhooks are off (they need TALKBATCH_WEBHOOK_SECRET and DID_API_KEY); rows are polled');

  const redis = await redisFor(config);
  let server;
  try {
    server = await startServer({ config, redisUrl: redis.url, logger, withWorker });
  } catch (error) {
    await redis.stop();
    throw error;
  }
  const running = server;
  // An all-in-one process runs schedule ticks too (see talkbatch schedule --help).
  const schedules = withWorker ? await startScheduleWorker({ config, redisUrl: redis.url, logger }) : undefined;
  console.log(`talkbatch serve listening on ${running.url}${withWorker ? ' (with a worker)' : ''}`);
  logger.info({ url: running.url, redis: redactRedisUrl(redis.url), queue: config.queueName, withWorker }, 'server started');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= running.close());
  const removeSignals = onStopSignals(() => void stop());
  try {
    // Runs until a signal, or until the in-process worker stops by itself (a rejected D-ID key).
    await Promise.race([new Promise<void>((resolve) => running.app.server.once('close', () => resolve())), running.worker?.stopped ?? new Promise<void>(() => {})]);
  } finally {
    await schedules?.close();
    await stop();
    removeSignals();
    await redis.stop();
  }
  logger.info('server stopped');
  return running.worker?.fatal ? 1 : 0;
}
