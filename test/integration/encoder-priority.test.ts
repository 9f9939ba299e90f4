import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { runFfmpeg } from '../../src/download/previews.js';

/*
 * Preview encodes run beside the worker's render hand-over on the same cores; with four worker processes
 * encoding at once on 2 cores the hosts bench went from 1.19-1.27 to 1.40-1.45 (docs/performance.md).
 * The encoder therefore runs at a lower CPU priority. A stand-in "ffmpeg" reports its pid and waits.
 */

const dir = await mkdtemp(join(tmpdir(), 'tb-encoder-priority-'));

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The nice value of a running process (field 19 of /proc/<pid>/stat). */
async function niceOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

describe.skipIf(process.platform !== 'linux')('the preview encoder', () => {
  it('runs at nice 10, below the worker', async () => {
    const encoder = join(dir, 'ffmpeg');
    const pidFile = join(dir, 'pid');
    await writeFile(encoder, `#!/bin/sh\necho $$ > "${pidFile}"\nexec sleep 30\n`);
    await chmod(encoder, 0o755);
    const abort = new AbortController();
    const running = runFfmpeg(encoder, [], 60_000, abort.signal).catch(() => undefined);
    let pid = 0;
    await vi.waitFor(async () => {
      pid = Number((await readFile(pidFile, 'utf8')).trim());
      expect(pid).toBeGreaterThan(0);
    }, { timeout: 10_000, interval: 20 });
    // At least 10 (a test run started under `nice` already passes its own value on).
    expect(await niceOf(pid)).toBeGreaterThanOrEqual(10);
    expect(await niceOf(pid)).toBeGreaterThan(await niceOf(process.pid));
    abort.abort();
    await running;
  });
});
