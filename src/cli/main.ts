#!/usr/bin/env node
import { ConfigError, UsageError } from '../shared/errors.js';
import { RedisUnavailableError } from './local-redis.js';
import { boundHeapGrowth } from './heap.js';

const HELP = `talkbatch: personalised talking-head videos from spreadsheets, through D-ID's talks API

Usage: talkbatch <command> [options]      (talkbatch <command> --help for details)

Commands:
  run <manifest>       validate, enqueue, process with in-process workers, report (the whole job)
  demo                 run jobs/demo.csv against the built-in D-ID simulator and a private Redis
  validate <manifest>  check every row, count them and estimate video seconds; spends nothing
  enqueue <manifest>   add a manifest's rows to the queue for separate workers
  worker               process queued rows until stopped
  status [batchId]     queue and batch progress (--watch to follow)
  report <batchId>     rebuild results.csv / results.jsonl for a batch
  retry <batchId> --failed   re-enqueue a batch's failed rows
  approve <batchId>    make the rows a --sample held back (after reviewing the sample)
  cancel <batchId>     take a batch's unstarted rows off the queue; drops a sample's held rows
  pause | resume       stop / restart taking jobs across all workers
  schedule <action>    re-read a sheet on a timetable and make its new rows (add, list, show, run, remove, apply)
  simulate             run the D-ID simulator as a standalone server
  serve                HTTP server: D-ID webhooks, REST API, dashboard, metrics (--with-worker: all in one)
  schema               print the job payload's JSON Schema (for other BullMQ clients)
  share revoke <batchId> [row]   turn off share-page links of a batch or one row
  cache stats|prune    the render cache: identical requests rendered before are copied, not paid again

Configuration comes from the environment (and .env); see the README's config table.
Exit codes: 0 ok, 1 failed rows or runtime error, 2 usage, config or manifest error.`;

// Each command's modules load only when it runs: a worker need not load Fastify, the dashboard or the simulator,
// which made every start (and every restart after a crash) seconds slower.
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'run' || command === 'validate' || command === 'enqueue') boundHeapGrowth();
  switch (command) {
    case 'run':
      return (await import('./commands/run.js')).runCommand(rest);
    case 'demo':
      return (await import('./commands/demo.js')).demoCommand(rest);
    case 'validate':
      return (await import('./commands/validate.js')).validateCommand(rest);
    case 'enqueue':
      return (await import('./commands/enqueue.js')).enqueueCommand(rest);
    case 'worker':
      return (await import('./commands/worker.js')).workerCommand(rest);
    case 'status':
      return (await import('./commands/status.js')).statusCommand(rest);
    case 'report':
      return (await import('./commands/admin.js')).reportCommand(rest);
    case 'retry':
      return (await import('./commands/admin.js')).retryCommand(rest);
    case 'approve':
      return (await import('./commands/admin.js')).approveCommand(rest);
    case 'cancel':
      return (await import('./commands/admin.js')).cancelCommand(rest);
    case 'serve':
      return (await import('./commands/serve.js')).serveCommand(rest);
    case 'schema':
      return (await import('./commands/schema.js')).schemaCommand(rest);
    case 'share':
      return (await import('./commands/share.js')).shareCommand(rest);
    case 'schedule':
      return (await import('./commands/schedule.js')).scheduleCommand(rest);
    case 'cache':
      return (await import('./commands/cache.js')).cacheCommand(rest);
    case 'pause':
    case 'resume':
      return (await import('./commands/admin.js')).pauseCommand(rest, command);
    case 'simulate':
    case 'simulator': {
      const { runSimulatorCommand } = await import('../simulator/cli.js');
      await runSimulatorCommand(rest);
      return 0;
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(HELP);
      return command === undefined ? 2 : 0;
    case '--version':
    case '-V': {
      const { createRequire } = await import('node:module');
      console.log((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}" (talkbatch --help lists them)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError || error instanceof ConfigError || error instanceof RedisUnavailableError) {
      process.stderr.write(`talkbatch: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    // parseArgs' own usage errors (unknown option, missing value).
    const code = (error as { code?: string } | null)?.code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`talkbatch: ${(error as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`talkbatch: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
