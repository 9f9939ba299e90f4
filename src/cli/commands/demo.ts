import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FFMPEG } from '../../download/previews.js';
import { ensureProgram, ProgramUnavailableError } from '../../shared/system-package.js';
import { startSimulator } from '../../simulator/server.js';
import { PREVIEW_HELP, PREVIEW_OPTIONS, previewOverrides } from '../preview-flags.js';
import { configFromFlags, GLOBAL_HELP, GLOBAL_OPTIONS, loggerFor } from '../context.js';
import { runBatch } from './run.js';

export const DEMO_HELP = `Usage: talkbatch demo [options]

Runs jobs/demo.csv (10 personalised rows, script from jobs/demo-script.txt) end to end against the
built-in D-ID simulator on a private Redis: real MP4s and results land in out/<batch>/.
No D-ID key and no Redis needed. A real D-ID key in the environment is ignored here.

Options:
  --render-ms N          simulated render time per video (default 2000)
  --plan-cap N           simulated D-ID concurrent-render cap (default 6)
${PREVIEW_HELP}
${GLOBAL_HELP}`;

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...GLOBAL_OPTIONS, ...PREVIEW_OPTIONS, 'render-ms': { type: 'string' }, 'plan-cap': { type: 'string' } },
  });
  if (values.help) {
    console.log(DEMO_HELP);
    return 0;
  }
  const root = packageRoot();
  const renderMs = Number(values['render-ms'] ?? 2000);
  const planCap = Number(values['plan-cap'] ?? 6);
  const simulator = await startSimulator({ knobs: { renderMs, renderJitter: 0.3, maxConcurrentRenders: planCap }, personalisedVideos: true });
  try {
    const settings = {
      DID_API_URL: simulator.url,
      DID_API_KEY: simulator.apiKey,
      TALKBATCH_POLL_INITIAL_MS: 500,
      TALKBATCH_POLL_MAX_MS: 1000,
      ...previewOverrides(values),
    };
    let plain = configFromFlags(values, settings);
    if (plain.previews) {
      // Like redis-server: Debian's ffmpeg is installed when missing (root on Debian/Ubuntu); else the demo goes on without previews.
      try {
        const ffmpeg = ensureProgram(FFMPEG, (message) => process.stderr.write(`${message}\n`));
        plain = configFromFlags(values, { ...settings, TALKBATCH_FFMPEG: ffmpeg });
      } catch (error) {
        if (!(error instanceof ProgramUnavailableError)) throw error;
        process.stderr.write(`${error.message}\nThe demo goes on without posters and GIFs.\n`);
      }
    }
    // The results carry share links even without a public URL: pointing at a local `talkbatch serve`.
    const config = plain.shareBaseUrl ? plain : configFromFlags(values, { ...settings, TALKBATCH_FFMPEG: plain.ffmpegPath, TALKBATCH_SHARE_URL: `http://${plain.host}:${plain.port}` });
    process.stderr.write(`D-ID simulator on ${simulator.url} (render ${renderMs} ms, plan cap ${planCap})\n`);
    return await runBatch({
      config,
      logger: loggerFor(config),
      manifest: join(root, 'jobs', 'demo.csv'),
      manifestOptions: { template: await readTemplate(join(root, 'jobs', 'demo-script.txt')) },
      quiet: values.quiet === true,
    });
  } finally {
    await simulator.close();
  }
}

async function readTemplate(path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return (await readFile(path, 'utf8')).trim();
}

/** The folder holding package.json, from src/ (tsx) or dist/ (built). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the talkbatch package folder');
    dir = parent;
  }
  return dir;
}
