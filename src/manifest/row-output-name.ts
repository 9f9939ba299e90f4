import { checkFileName, outputFileName, sanitizeNamePart, type VideoFormat } from './name.js';
import type { RowContext, RowFields } from './row-fields.js';
import { renderWith } from './template.js';

/** Who the row is: its id cell (when valid) and its row key. */
export interface RowIdentity {
  id: string | undefined;
  idValid: boolean;
  rowKey: string;
}

/** The output file name: the name cell, else the name template, else the id, else the row key. */
export function buildOutputName(fields: RowFields, ctx: RowContext, identity: RowIdentity, format: VideoFormat): string | undefined {
  const baseName = baseNameOf(fields, ctx, identity);
  if (baseName === undefined) return undefined;
  const result = outputFileName(baseName, format);
  if ('fileName' in result) return result.fileName;
  fields.add('name', result.message);
  return undefined;
}

function baseNameOf(fields: RowFields, ctx: RowContext, { id, idValid, rowKey }: RowIdentity): string | undefined {
  const nameCell = fields.get('name');
  if (nameCell !== undefined) return checkedName(fields, nameCell);
  if (fields.given('name')) return undefined;
  if (ctx.nameTemplate !== undefined) {
    const rendered = renderWith(ctx.nameTemplate, fields.input, sanitizeNamePart, ctx.namer);
    for (const name of rendered.missing) {
      if (!fields.bad.has(name)) fields.add(name, `name template variable "${name}" is empty (add a fallback: {{${name}|...}})`);
    }
    return rendered.missing.length === 0 ? checkedName(fields, rendered.text.trim()) : undefined;
  }
  // An invalid id already failed the row; it must not become a file name either.
  if (id === undefined) return rowKey;
  return idValid ? id : undefined;
}

function checkedName(fields: RowFields, name: string): string | undefined {
  const message = checkFileName(name);
  if (message === undefined) return name;
  fields.add('name', message);
  return undefined;
}
