import { spawn, type ChildProcess } from 'node:child_process';
import { ROOT } from './cli.js';

export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves once the worker logged that it started taking jobs. */
  ready: Promise<void>;
  exited: Promise<number | null>;
  output(): string;
}

/**
 * A real `talkbatch worker` process (sources through tsx), logging JSON to stderr. `exec` runs it through
 * a command prefix, e.g. a network namespace's `ip netns exec <ns>` (test/helpers/netns.ts).
 */
export function spawnWorker(env: Record<string, string>, options: { exec?: readonly string[] } = {}): WorkerProcess {
  const [command, ...prefix] = [...(options.exec ?? []), process.execPath];
  const child = spawn(command, [...prefix, '--import', 'tsx', 'src/cli/main.ts', 'worker'], {
    cwd: ROOT,
    // Previews off unless a test asks for them, as in-process tests have them (test/helpers/context.ts).
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TALKBATCH_LOG_LEVEL: 'info', TALKBATCH_LOG_PRETTY: 'false', TALKBATCH_PREVIEWS: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const onData = (chunk: Buffer): void => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
    if (output.includes('"worker started"')) markReady();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, ready, exited, output: () => output };
}
