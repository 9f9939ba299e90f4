import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { redisUrl } from '../helpers/context.js';
import { ROOT, runCli } from '../helpers/cli.js';

describe('talkbatch serve and schema commands', () => {
  it('serve prints its URL, answers, and stops cleanly on SIGTERM', async () => {
    const key = 'cli-key-for-tests-0123456789abcdef';
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', '--queue', `cli-${randomUUID().slice(0, 8)}`], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_URL: redisUrl(), TALKBATCH_API_KEYS: key, TALKBATCH_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /listening on (http:\/\/\S+)/.exec(stdout);
        if (match?.[1]) resolve(match[1]);
      });
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    try {
      expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok' });
      expect((await fetch(`${url}/v1/batches`)).status).toBe(401);
      expect((await fetch(`${url}/v1/batches`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, stderr).toBe(0);
    expect(stderr).not.toContain(key);
  });

  it('schema prints the committed docs/job-payload.schema.json', async () => {
    const result = await runCli(['schema']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(await readFile(new URL('../../docs/job-payload.schema.json', import.meta.url), 'utf8'));
  });
});
