import { parseArgs } from 'node:util';
import { jobPayloadJsonSchemaText } from '../../queue/payload-schema.js';

export const SCHEMA_HELP = `Usage: talkbatch schema

Prints the JSON Schema (draft 2020-12) of a talkbatch job payload: what any BullMQ client (Python,
Elixir, PHP...) must put in a job named "talk" for talkbatch workers to process it. The same document
is committed as docs/job-payload.schema.json; docs/api.md shows a Python example.

Options:
  -h, --help             this help`;

export function schemaCommand(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(SCHEMA_HELP);
    return 0;
  }
  process.stdout.write(jobPayloadJsonSchemaText());
  return 0;
}
