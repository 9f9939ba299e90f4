import { spawn, type ChildProcess } from 'node:child_process';
import { ROOT } from './paths.js';

/** The D-ID simulator as `talkbatch simulate` runs it: its own process, so its CPU is not ours. */
export interface SimulatorProcess {
  url: string;
  apiKey: string;
  child: ChildProcess;
  stats(): Promise<SimStats>;
  resetStats(): Promise<void>;
  setKnobs(knobs: Record<string, unknown>): Promise<void>;
  /** Every talk the simulator holds, newest first (GET /talks, paged). */
  talks(): Promise<SimTalk[]>;
  stop(): Promise<void>;
}

export interface SimStats {
  totalCreates: number;
  totalRequests: number;
  responsesByStatus: Record<string, number>;
  duplicateUserData: string[];
  maxConcurrentRendersSeen: number;
  rendersInFlight: number;
  downloads: number;
  webhooksSent: number;
  webhookFailures: number;
  /** Credits the simulator charged, per talk id (its billing rule on each talk's duration). */
  billedCredits: Record<string, number>;
  totalBilledCredits: number;
}

export interface SimTalk {
  id: string;
  status: string;
  created_at?: string;
  modified_at?: string;
  user_data?: string;
  /** The video's length in seconds, as D-ID reports it. */
  duration?: number;
}

export interface SimulatorFlags {
  renderMs: number;
  renderJitter?: number;
  maxConcurrent?: number;
  webhookDelayMs?: number;
  allowHttpWebhooks?: boolean;
  /** Address to listen on (default 127.0.0.1), e.g. a network namespace lab's gateway. */
  host?: string;
  /** Credits on the account (default unlimited). */
  credits?: number;
}

export async function startSimulatorProcess(flags: SimulatorFlags): Promise<SimulatorProcess> {
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'simulate', '--port', '0', '--render-ms', String(flags.renderMs)];
  if (flags.renderJitter !== undefined) args.push('--render-jitter', String(flags.renderJitter));
  if (flags.maxConcurrent !== undefined) args.push('--max-concurrent', String(flags.maxConcurrent));
  if (flags.webhookDelayMs !== undefined) args.push('--webhook-delay-ms', String(flags.webhookDelayMs));
  if (flags.allowHttpWebhooks) args.push('--allow-http-webhooks');
  if (flags.host !== undefined) args.push('--host', flags.host);
  if (flags.credits !== undefined) args.push('--credits', String(flags.credits));
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1', TALKBATCH_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const { url, apiKey } = await new Promise<{ url: string; apiKey: string }>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`simulator did not start within 30 s:\n${output}`)), 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+) \(API key: ([^)]+)\)/.exec(output);
      if (match?.[1] && match[2]) {
        clearTimeout(timer);
        resolve({ url: match[1], apiKey: match[2] });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`simulator exited with code ${code}:\n${output}`));
    });
  });
  // Keep draining its output so a full pipe never stalls it.
  child.stdout.resume();
  child.stderr.resume();

  const admin = async <T>(path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${url}${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`simulator ${path}: HTTP ${response.status}`);
    return (await response.json()) as T;
  };
  return {
    url,
    apiKey,
    child,
    stats: () => admin<SimStats>('/__sim/stats'),
    resetStats: async () => {
      await admin('/__sim/stats/reset', {});
    },
    setKnobs: async (knobs) => {
      await admin('/__sim/knobs', knobs);
    },
    talks: async () => {
      const all: SimTalk[] = [];
      let token: string | undefined;
      do {
        const response = await fetch(`${url}/talks?limit=100${token ? `&token=${token}` : ''}`, { headers: { authorization: `Basic ${apiKey}` } });
        const page = (await response.json()) as { talks: SimTalk[]; token?: string };
        all.push(...page.talks);
        token = page.token;
      } while (token);
      return all;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Σ render time of the talks, from D-ID's own timestamps (created_at → modified_at of a finished talk). */
export function renderMsOf(talk: SimTalk): number | undefined {
  if (!talk.created_at || !talk.modified_at || talk.status !== 'done') return undefined;
  return Date.parse(talk.modified_at) - Date.parse(talk.created_at);
}
