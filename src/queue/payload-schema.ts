import { z } from 'zod';
import { JobPayloadV1 } from './payload.js';

/**
 * The job payload as JSON Schema (draft 2020-12), for BullMQ clients in other languages. It describes
 * what a producer may send (defaults optional); `state` is written by workers and must be left out.
 * docs/job-payload.schema.json is this, committed; a test keeps the two equal.
 */
export function jobPayloadJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(JobPayloadV1, { io: 'input' }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  return {
    $schema,
    $id: 'urn:talkbatch:job-payload:v1',
    title: 'talkbatch job payload, version 1',
    description:
      'Data of a BullMQ job named "talk" on the talkbatch queue (prefix "{talkbatch}", queue "talks" by default). ' +
      'Job id: "<batchId>-<rowKey>". "state" is written by workers: leave it out. See docs/api.md.',
    ...rest,
  };
}

/** The schema as committed: two-space JSON with a final newline. */
export function jobPayloadJsonSchemaText(): string {
  return `${JSON.stringify(jobPayloadJsonSchema(), null, 2)}\n`;
}
