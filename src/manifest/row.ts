import { assembleBody, checkBody } from './row-body.js';
import { intakeCells, type RawCell } from './row-cells.js';
import { buildConfig } from './row-config.js';
import { RowFields, type RowContext } from './row-fields.js';
import { imageSource } from './row-image.js';
import { buildOutputName, type RowIdentity } from './row-output-name.js';
import { computeRowKey } from './row-key.js';
import { buildScript } from './row-script.js';
import { ROW_ID_PATTERN } from './schemas.js';
import type { ManifestIssue, ManifestRow } from './types.js';

/*
 * One row, in phases: cells (row-cells.ts), identity, script and voice (row-script.ts, row-provider.ts), image
 * (row-image.ts), config (row-config.ts), output name (row-output-name.ts), then the D-ID body and its schema check
 * (row-body.ts). Every phase reads the cells through RowFields (row-fields.ts) and adds its issues there, so the row
 * reports everything wrong with it at once, in this order.
 */

export type { CellValue, RawCell } from './row-cells.js';
export type { RowContext } from './row-fields.js';

export type BuiltRow =
  | { kind: 'empty' }
  | { kind: 'row'; rowKey: string; idFromCell: boolean; input: Record<string, string>; outputName?: string; issues: ManifestIssue[]; row?: ManifestRow };

/** Builds one row: cell checks first (size, formula), then meaning; the D-ID body only when nothing is wrong. */
export function buildRow(cells: readonly RawCell[], line: number, ctx: RowContext): BuiltRow {
  const fields = new RowFields(ctx, line);
  if (!intakeCells(cells, fields)) return { kind: 'empty' };
  const identity = readIdentity(fields);
  const script = buildScript(fields, ctx);
  const source = imageSource(fields, ctx);
  const config = buildConfig(fields, ctx.defaults);
  const outputName = buildOutputName(fields, ctx, identity, config.result_format === 'mov' ? 'mov' : 'mp4');

  const { rowKey, id } = identity;
  const { input, issues } = fields;
  const built: BuiltRow = { kind: 'row', rowKey, idFromCell: id !== undefined, input, issues };
  if (outputName !== undefined) built.outputName = outputName;
  if (issues.length > 0 || script.script === undefined || source === undefined || outputName === undefined) return built;
  const body = assembleBody(fields, source, script.script, config);
  if (issues.length > 0) return built;
  const talk = checkBody(fields, body, script.column);
  if (talk !== undefined) built.row = { line, rowKey, input, talk, outputName, estimatedSeconds: script.estimatedSeconds };
  return built;
}

/** The id cell (ids become part of job ids, so they keep to a small alphabet) and the row key. */
function readIdentity(fields: RowFields): RowIdentity {
  const id = fields.get('id');
  let idValid = false;
  if (id !== undefined) {
    if (id.includes(':')) fields.add('id', 'must not contain ":" (ids become part of job ids)');
    else if (!ROW_ID_PATTERN.test(id)) fields.add('id', 'must start with a letter or digit and use only letters, digits, ".", "_" and "-" (at most 100 characters)');
    else idValid = true;
  }
  return { id, idValid, rowKey: computeRowKey(fields.input) };
}
