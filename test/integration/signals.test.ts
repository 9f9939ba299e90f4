import { spawn } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { ROOT } from '../helpers/cli.js';

describe('stop signals', () => {
  it('the first SIGTERM asks for a graceful stop; a second one exits at once with 130', async () => {
    // A process whose graceful stop never finishes, so only the second signal can end it.
    const script = "import { onStopSignals } from './src/cli/context.ts'; onStopSignals(() => {}); setInterval(() => {}, 1000); console.error('ready');";
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await vi.waitFor(() => expect(stderr).toContain('ready'), { timeout: 15_000, interval: 20 });
    child.kill('SIGTERM');
    await vi.waitFor(() => expect(stderr).toContain('finishing work in hand'), { timeout: 5_000, interval: 20 });
    child.kill('SIGTERM');
    expect(await exited).toBe(130);
    expect(stderr).toContain('SIGTERM again: stopping now');
  });
});
