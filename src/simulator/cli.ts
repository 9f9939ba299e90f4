import { parseArgs } from 'node:util';
import { UsageError } from '../shared/errors.js';
import { DEFAULT_KNOBS, mergeKnobs, type SimulatorKnobs } from './knobs.js';
import { startSimulator, type SimulatorOptions } from './server.js';

const DEFAULT_PORT = 8787;

export const SIMULATOR_USAGE = `Usage: talkbatch simulator [options]

Runs a D-ID look-alike API (POST/GET/DELETE /talks, GET /credits, result downloads, webhooks)
until interrupted. Point talkbatch at it with the printed URL and API key.

Options:
  --port <n>                 port to listen on (default ${DEFAULT_PORT}; 0 = any free port)
  --host <host>              address to listen on (default 127.0.0.1)
  --api-key <user:secret>    accepted API key; repeat for several (default sim-user:sim-secret)
  --render-ms <ms>           time from create to done (default ${DEFAULT_KNOBS.renderMs})
  --render-jitter <0..1>     random variation of the render time (default 0)
  --max-concurrent <n>       talks rendering at once before creates get 429 (default unlimited)
  --rate-limit <n>           requests per second per API key before 429 (default unlimited)
  --retry-after <s|none>     Retry-After on 429s (default 1)
  --credits <n>              credits left; a create costing more (1 per started 15 s of video) gets 402 (default unlimited)
  --error-rate <0..1>        share of talks ending "error"
  --reject-rate <0..1>       share of talks ending "rejected"
  --fail-5xx-rate <0..1>     share of API requests answering 500
  --rate-limit-rate <0..1>   share of API requests answering 429
  --gateway-504-rate <0..1>  share of creates that create the talk but answer 504
  --expire-rate <0..1>       share of result URLs already expired when issued
  --truncate-rate <0..1>     share of downloads cut off halfway
  --result-ttl-ms <ms>       lifetime of result URLs (default 24 h)
  --download-delay-ms <ms>   time the result server takes to answer a video download (default 0)
  --webhook-delay-ms <ms>    delay before a webhook is sent (default 0)
  --allow-http-webhooks      accept http:// webhooks (D-ID demands https)
  --plan <full|lite>         "lite" answers 403 PermissionError to stitch or subtitles (default full)
  --moderation-rate <0..1>   share of creates refused with 451 (content moderation)
  --non-image-source <url>   a talk with this source_url ends "error" (SourceError), as if D-ID found no image
                             there; repeat for several. A source_url ending in .mp4/.mov/.webm/.html/.htm/.txt/
                             .pdf/.json always does. URLs are judged by name, never fetched
  --help                     show this help
`;

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  'api-key': { type: 'string', multiple: true },
  'render-ms': { type: 'string' },
  'render-jitter': { type: 'string' },
  'max-concurrent': { type: 'string' },
  'rate-limit': { type: 'string' },
  'retry-after': { type: 'string' },
  credits: { type: 'string' },
  'error-rate': { type: 'string' },
  'reject-rate': { type: 'string' },
  'fail-5xx-rate': { type: 'string' },
  'rate-limit-rate': { type: 'string' },
  'gateway-504-rate': { type: 'string' },
  'expire-rate': { type: 'string' },
  'truncate-rate': { type: 'string' },
  'result-ttl-ms': { type: 'string' },
  'download-delay-ms': { type: 'string' },
  'webhook-delay-ms': { type: 'string' },
  'allow-http-webhooks': { type: 'boolean' },
  plan: { type: 'string' },
  'moderation-rate': { type: 'string' },
  'non-image-source': { type: 'string', multiple: true },
  help: { type: 'boolean' },
} as const;

type NumberFlag = Exclude<keyof typeof OPTIONS, 'port' | 'host' | 'api-key' | 'retry-after' | 'allow-http-webhooks' | 'plan' | 'non-image-source' | 'help'>;

/** Which knob each numeric flag sets, and what values it takes. */
const KNOB_FLAGS: ReadonlyArray<{ flag: NumberFlag; knob: keyof SimulatorKnobs; kind: 'duration' | 'probability' | 'count' | 'rate' }> = [
  { flag: 'render-ms', knob: 'renderMs', kind: 'duration' },
  { flag: 'render-jitter', knob: 'renderJitter', kind: 'probability' },
  { flag: 'max-concurrent', knob: 'maxConcurrentRenders', kind: 'count' },
  { flag: 'rate-limit', knob: 'rateLimitPerSecond', kind: 'rate' },
  { flag: 'credits', knob: 'credits', kind: 'count' },
  { flag: 'error-rate', knob: 'errorRate', kind: 'probability' },
  { flag: 'reject-rate', knob: 'rejectRate', kind: 'probability' },
  { flag: 'fail-5xx-rate', knob: 'failureRate5xx', kind: 'probability' },
  { flag: 'rate-limit-rate', knob: 'rateLimitRate', kind: 'probability' },
  { flag: 'gateway-504-rate', knob: 'gateway504AfterCreateRate', kind: 'probability' },
  { flag: 'expire-rate', knob: 'expireBeforeDownloadRate', kind: 'probability' },
  { flag: 'truncate-rate', knob: 'truncateDownloadRate', kind: 'probability' },
  { flag: 'result-ttl-ms', knob: 'resultUrlTtlMs', kind: 'duration' },
  { flag: 'download-delay-ms', knob: 'downloadDelayMs', kind: 'duration' },
  { flag: 'webhook-delay-ms', knob: 'webhookDelayMs', kind: 'duration' },
  { flag: 'moderation-rate', knob: 'moderationRate', kind: 'probability' },
];

export type SimulatorCommand = { help: true } | { help: false; options: SimulatorOptions & { port: number } };

/** Parses the simulator's flags; throws UsageError naming the flag for anything it cannot take. */
export function parseSimulatorArgs(argv: readonly string[]): SimulatorCommand {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return { help: true };

  const knobValues: Record<string, number | string | boolean | null | string[]> = {};
  for (const { flag, knob, kind } of KNOB_FLAGS) {
    const raw = values[flag];
    if (raw !== undefined) knobValues[knob] = parseNumber(flag, raw, kind);
  }
  const retryAfter = values['retry-after'];
  if (retryAfter !== undefined) knobValues.retryAfterSeconds = retryAfter === 'none' ? null : parseNumber('retry-after', retryAfter, 'whole-seconds');
  if (values['allow-http-webhooks']) knobValues.allowHttpWebhooks = true;
  const nonImageSources = values['non-image-source'];
  if (nonImageSources !== undefined) knobValues.nonImageSources = nonImageSources;
  const plan = values.plan;
  if (plan !== undefined) {
    if (plan !== 'full' && plan !== 'lite') throw new UsageError(`--plan must be "full" or "lite", got "${plan}"`);
    knobValues.plan = plan;
  }
  const rateGiven = (knob: keyof SimulatorKnobs): number => {
    const value = knobValues[knob];
    return typeof value === 'number' ? value : 0;
  };
  if (rateGiven('errorRate') + rateGiven('rejectRate') > 1) throw new UsageError('--error-rate plus --reject-rate must not exceed 1');
  // Every value was checked above, so this only turns them into typed knobs.
  const knobs = mergeKnobs({ ...DEFAULT_KNOBS }, knobValues);

  const options: SimulatorOptions & { port: number } = {
    port: values.port === undefined ? DEFAULT_PORT : parsePort(values.port),
    knobs,
  };
  if (values.host !== undefined) options.host = values.host;
  const apiKeys = values['api-key'];
  if (apiKeys !== undefined) {
    const blank = apiKeys.find((key) => key.trim() === '');
    if (blank !== undefined) throw new UsageError('--api-key must not be empty');
    options.apiKeys = apiKeys;
  }
  return { help: false, options };
}

export interface SimulatorCommandIo {
  /** Where the startup line and help go (default console.log). */
  print?: (line: string) => void;
  /** Stops the simulator like SIGINT does (for tests and embedding). */
  signal?: AbortSignal;
}

/** `talkbatch simulator`: starts the simulator and keeps it running until SIGINT/SIGTERM (or `io.signal`), then closes it. */
export async function runSimulatorCommand(argv: string[], io: SimulatorCommandIo = {}): Promise<void> {
  const print = io.print ?? ((line: string) => console.log(line));
  const command = parseSimulatorArgs(argv);
  if (command.help) {
    print(SIMULATOR_USAGE);
    return;
  }
  const simulator = await startSimulator(command.options);
  print(`D-ID simulator listening on ${simulator.url} (API key: ${simulator.apiKey})`);

  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolveStop();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (io.signal?.aborted) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  await simulator.close();
}

function parseNumber(flag: string, raw: string, kind: 'duration' | 'probability' | 'count' | 'rate' | 'whole-seconds'): number {
  const unboundedAllowed = kind === 'count' || kind === 'rate';
  if (unboundedAllowed && /^(infinity|unlimited)$/i.test(raw)) return Infinity;
  const value = raw.trim() === '' ? NaN : Number(raw);
  const wholeNumber = kind === 'count' || kind === 'whole-seconds';
  const valid = Number.isFinite(value) && value >= 0 && (kind !== 'probability' || value <= 1) && (!wholeNumber || Number.isInteger(value));
  if (valid) return value;
  const expected: Record<typeof kind, string> = {
    duration: 'a number of milliseconds ≥ 0',
    probability: 'a number from 0 to 1',
    count: 'a whole number ≥ 0 or "Infinity"',
    rate: 'a number ≥ 0 or "Infinity"',
    'whole-seconds': 'a whole number of seconds ≥ 0 or "none"',
  };
  throw new UsageError(`--${flag} must be ${expected[kind]}, got "${raw}"`);
}

function parsePort(raw: string): number {
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65_535) throw new UsageError(`--port must be a whole number from 0 to 65535, got "${raw}"`);
  return port;
}
