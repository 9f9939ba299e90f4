/*
 * `npm run bench` runs every scenario; `npm run bench -- NAME [NAME...]` runs some. Each scenario
 * runs talkbatch and its baseline back to back against the D-ID simulator on a private Redis, then
 * the runner prints one table. `--write-doc` also puts the table into docs/performance.md.
 * Results (with raw numbers) go to bench/results/<time>.json.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startPrivateRedis } from '../src/cli/local-redis.js';
import { ROOT } from './lib/paths.js';
import { installCommandCounter } from './lib/redis.js';
import { machineLine, markdownTable, type Figure, type Scenario, type ScenarioResult } from './lib/report.js';
import { cache } from './scenarios/cache.js';
import { credits } from './scenarios/credits.js';
import { enqueue } from './scenarios/enqueue.js';
import { hosts } from './scenarios/hosts.js';
import { latency } from './scenarios/latency.js';
import { overhead } from './scenarios/overhead.js';
import { previews } from './scenarios/previews.js';
import { scale } from './scenarios/scale.js';
import { slots, slotsCapUnknown } from './scenarios/slots.js';

const SCENARIOS: readonly Scenario[] = [slots, slotsCapUnknown, enqueue, overhead, latency, scale, previews, hosts, cache, credits];

const DOC = join(ROOT, 'docs', 'performance.md');
const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

async function redisVersion(): Promise<string> {
  const server = await startPrivateRedis();
  const redis = new Redis(server.url);
  try {
    return /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'write-doc': { type: 'boolean' }, list: { type: 'boolean' } } });
  if (values.list) {
    for (const scenario of SCENARIOS) console.log(`${scenario.name.padEnd(18)} ${scenario.describe}`);
    return 0;
  }
  const unknown = positionals.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name));
  if (unknown.length > 0) {
    console.error(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const chosen = positionals.length > 0 ? SCENARIOS.filter((scenario) => positionals.includes(scenario.name)) : SCENARIOS;
  installCommandCounter();
  const machine = machineLine(await redisVersion());
  console.error(`machine: ${machine}`);

  const results: ScenarioResult[] = [];
  const startedAt = new Date();
  for (const scenario of chosen) {
    console.error(`\n== ${scenario.name}: ${scenario.describe}`);
    const started = performance.now();
    const outcome = await scenario.run((line) => console.error(`   ${line}`));
    const result: ScenarioResult = { name: scenario.name, ...outcome, seconds: (performance.now() - started) / 1000 };
    results.push(result);
    console.error(`   (${result.seconds.toFixed(0)} s)`);
  }

  const figures: Figure[] = results.flatMap((result) => result.figures);
  const table = markdownTable(figures);
  const totalSeconds = results.reduce((sum, result) => sum + result.seconds, 0);
  console.log(`\n${table}\n\nmachine: ${machine}\n${startedAt.toISOString()}, ${chosen.length} scenario(s) in ${totalSeconds.toFixed(0)} s`);

  const dir = join(ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify({ startedAt, machine, totalSeconds, results }, null, 2)}\n`);
  console.error(`raw results: ${file}`);

  if (values['write-doc']) {
    const doc = await readFile(DOC, 'utf8');
    const begin = doc.indexOf(START);
    const end = doc.indexOf(END);
    if (begin < 0 || end < begin) throw new Error(`${DOC} has no ${START} ... ${END} section`);
    const block = `${START}\n${table}\n\nMachine: ${machine}.\nRun ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC: \`npm run bench${positionals.length > 0 ? ` -- ${positionals.join(' ')}` : ''}\`, ${totalSeconds.toFixed(0)} s.\n${END}`;
    await writeFile(DOC, doc.slice(0, begin) + block + doc.slice(end + END.length));
    console.error(`updated ${DOC}`);
  }
  return figures.some((figure) => figure.met === false) ? 1 : 0;
}

process.exitCode = await main();
