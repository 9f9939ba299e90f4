import type { TalkWithFiles } from '../did/schemas.js';
import { CELL_MAX, formatCount } from './cells.js';
import { checkLocalMedia, isLocalPath } from './local-media.js';
import { buildProvider } from './row-provider.js';
import type { RowContext, RowFields } from './row-fields.js';
import { escapeXml, renderWith } from './template.js';
import { audioUrlMessage } from './urls.js';

type Script = TalkWithFiles['script'];

export interface ScriptPart {
  script?: Script;
  /** Where the text came from (`script` or `template`), for issues D-ID's schema finds in it. */
  column: string;
  /** Text scripts only; null for audio. */
  estimatedSeconds: number | null;
}

const CHARS_PER_SECOND = 14;

function stripSsml(text: string): string {
  return text.replace(/<[^>]*>/g, '');
}

export function estimateSeconds(text: string, ssml: boolean): number {
  const chars = (ssml ? stripSsml(text) : text).length;
  return Math.max(1, Math.round((chars / CHARS_PER_SECOND) * 10) / 10);
}

/** A script cell, else an audio_url cell, else the template (row cells beat the batch-wide template). */
export function buildScript(fields: RowFields, ctx: RowContext): ScriptPart {
  const ssml = fields.bool('ssml') ?? ctx.defaults.ssml ?? false;
  const subtitles = fields.bool('subtitles') ?? ctx.defaults.subtitles;
  if (fields.given('script') && fields.given('audio_url')) fields.add('audio_url', 'give either script or audio_url, not both');
  if (fields.given('script') || (!fields.given('audio_url') && ctx.template !== undefined)) return textScript(fields, ctx, ssml, subtitles);
  const part: ScriptPart = { column: 'script', estimatedSeconds: null };
  if (fields.given('audio_url')) {
    // Voice columns mean nothing for an audio script; a sheet mixing text and audio rows may still fill them.
    const script = audioScript(fields, ctx);
    if (script !== undefined) {
      if (subtitles !== undefined) script.subtitles = subtitles;
      part.script = script;
    }
  } else {
    fields.add(undefined, 'no script: add a script column, pass a template, or give audio_url');
  }
  return part;
}

function textScript(fields: RowFields, ctx: RowContext, ssml: boolean, subtitles: boolean | undefined): ScriptPart {
  let text = fields.get('script');
  let column = 'script';
  if (text === undefined && !fields.given('script') && ctx.template !== undefined) {
    column = 'template';
    const rendered = renderWith(ctx.template, fields.input, ssml ? escapeXml : (value) => value, ctx.namer);
    for (const name of rendered.missing) {
      if (fields.bad.has(name)) continue;
      fields.add(name, `template variable "${name}" is empty (add a fallback: {{${name}|...}})`);
    }
    text = rendered.missing.length === 0 ? rendered.text : undefined;
  }
  const provider = buildProvider(fields, ctx.defaults);
  const part: ScriptPart = { column, estimatedSeconds: null };
  if (text === undefined) return part;
  if (text.length < 3) fields.add(column, `must be at least 3 characters (got ${text.length})`);
  else if (text.length > CELL_MAX) fields.add(column, `must be at most ${formatCount(CELL_MAX)} characters (got ${formatCount(text.length)})`);
  else {
    const script: Script = { type: 'text', input: text };
    if (provider !== undefined) script.provider = provider;
    if (ssml) script.ssml = true;
    if (subtitles !== undefined) script.subtitles = subtitles;
    part.script = script;
    part.estimatedSeconds = estimateSeconds(text, ssml);
  }
  return part;
}

/** An audio script from a local file or a URL; undefined (with an issue) when it cannot be used. */
function audioScript(fields: RowFields, ctx: RowContext): Script | undefined {
  const url = fields.get('audio_url');
  if (url === undefined) return undefined;
  if (isLocalPath(url)) {
    const local = checkLocalMedia(url, 'audio', ctx.localMedia);
    if (!('message' in local)) return { type: 'audio', audio_file: local.path };
    fields.add('audio_url', local.message);
    return undefined;
  }
  const message = audioUrlMessage(url);
  if (message === undefined) return { type: 'audio', audio_url: url };
  fields.add('audio_url', message);
  return undefined;
}
