import { request } from 'undici';
import { describe, expect, it, vi } from 'vitest';
import { parseSimulatorArgs, runSimulatorCommand } from '../../src/simulator/cli.js';
import { DEFAULT_KNOBS } from '../../src/simulator/knobs.js';

describe('parseSimulatorArgs', () => {
  it('defaults to port 8787 and the default knobs', () => {
    expect(parseSimulatorArgs([])).toEqual({ help: false, options: { port: 8787, knobs: DEFAULT_KNOBS } });
  });

  it('maps flags to options and knobs', () => {
    const command = parseSimulatorArgs([
      '--port', '0', '--host', '0.0.0.0', '--api-key', 'a:b', '--api-key', 'c:d', '--render-ms', '250', '--max-concurrent', '3',
      '--rate-limit', 'Infinity', '--credits', '10', '--error-rate', '0.1', '--reject-rate', '0.2', '--fail-5xx-rate', '0.05',
      '--gateway-504-rate', '0.01', '--expire-rate', '0.5', '--truncate-rate', '0.25', '--retry-after', 'none', '--allow-http-webhooks',
    ]);
    expect(command).toEqual({
      help: false,
      options: {
        port: 0,
        host: '0.0.0.0',
        apiKeys: ['a:b', 'c:d'],
        knobs: {
          ...DEFAULT_KNOBS,
          renderMs: 250,
          maxConcurrentRenders: 3,
          rateLimitPerSecond: Infinity,
          credits: 10,
          errorRate: 0.1,
          rejectRate: 0.2,
          failureRate5xx: 0.05,
          gateway504AfterCreateRate: 0.01,
          expireBeforeDownloadRate: 0.5,
          truncateDownloadRate: 0.25,
          retryAfterSeconds: null,
          allowHttpWebhooks: true,
        },
      },
    });
  });

  it.each([
    [['--port', '70000'], '--port'],
    [['--render-ms', 'soon'], '--render-ms'],
    [['--error-rate', '2'], '--error-rate'],
    [['--max-concurrent', '1.5'], '--max-concurrent'],
    [['--credits', ''], '--credits'],
    [['--retry-after', 'later'], '--retry-after'],
    [['--error-rate', '0.7', '--reject-rate', '0.7'], '--reject-rate'],
    [['--no-such-flag'], '--no-such-flag'],
  ])('names the flag in the error for %j', (argv, flag) => {
    expect(() => parseSimulatorArgs(argv)).toThrow(flag);
  });

  it('takes the plan, moderation and source-check knobs', () => {
    const command = parseSimulatorArgs(['--plan', 'lite', '--moderation-rate', '0.3', '--non-image-source', 'https://a.example/x.jpg', '--non-image-source', 'https://b.example/y.png']);
    expect(command.help ? undefined : command.options.knobs).toMatchObject({ plan: 'lite', moderationRate: 0.3, nonImageSources: ['https://a.example/x.jpg', 'https://b.example/y.png'] });
    expect(() => parseSimulatorArgs(['--plan', 'gold'])).toThrow('--plan must be "full" or "lite", got "gold"');
    expect(() => parseSimulatorArgs(['--moderation-rate', '2'])).toThrow('--moderation-rate must be a number from 0 to 1');
  });

  it('recognises --help', () => {
    expect(parseSimulatorArgs(['--help'])).toEqual({ help: true });
  });
});

describe('runSimulatorCommand', () => {
  it('prints where it listens, serves until stopped, then closes', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const running = runSimulatorCommand(['--port', '0', '--api-key', 'cli:secret'], { print: (line) => lines.push(line), signal: stop.signal });
    await vi.waitFor(() => expect(lines).toHaveLength(1));
    const match = /^D-ID simulator listening on (http:\/\/127\.0\.0\.1:\d+) \(API key: cli:secret\)$/.exec(lines[0] ?? '');
    expect(match).not.toBeNull();
    const url = match?.[1] ?? '';
    const credits = await request(`${url}/credits`, { headers: { authorization: 'Basic cli:secret' } });
    await credits.body.dump();
    expect(credits.statusCode).toBe(200);

    stop.abort();
    await running;
    await expect(request(`${url}/credits`)).rejects.toThrow();
  });
});
