import { isWindowsReservedName, outputNameBytesProblem } from '../shared/file-names.js';

/*
 * Output file names. A name must be a plain file name: the worker joins it to the output folder, so anything that
 * could leave that folder (separators, `..`, a leading dot, control characters) is an issue, never silently fixed.
 * Characters that only some file systems refuse (`< > : " | ? *`, trailing dots and spaces) are replaced, so a name
 * that works on Linux also works on Windows; DOS device names (`CON`, `COM1.txt`) and names too long in bytes are
 * issues, checked before anything is spent.
 */

export const NAME_MAX = 150;
export const PLAIN_NAME_MESSAGE = 'name must be a plain file name (no folders, no leading dot)';

/** Control characters: C0, DEL and C1. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** An issue message for a name the user gave, or undefined when it is acceptable. */
export function checkFileName(name: string): string | undefined {
  if (name.includes('/') || name.includes('\\') || name.includes('..') || name.startsWith('.') || CONTROL.test(name)) {
    return PLAIN_NAME_MESSAGE;
  }
  if (name.length > NAME_MAX) return `name must be at most ${NAME_MAX} characters (got ${name.length})`;
  return undefined;
}

/** For a value substituted into a name template: separators and control characters become '-', spaces collapse. */
export function sanitizeNamePart(value: string): string {
  return value.replace(/[/\\\u0000-\u001f\u007f-\u009f]+/g, '-').replace(/\s+/g, ' ').trim();
}

export type VideoFormat = 'mp4' | 'mov';

/**
 * The final file name for a name that passed checkFileName: Windows-reserved characters replaced, and `.mp4`/`.mov`
 * added unless the name already ends in the right one. Returns an issue message when it ends in the other one.
 */
export function outputFileName(name: string, format: VideoFormat): { fileName: string } | { message: string } {
  const match = /\.(mp4|mov)$/i.exec(name);
  let base = name;
  if (match?.[1] !== undefined) {
    const given = match[1].toLowerCase();
    if (given !== format) return { message: `name ends in .${given} but result_format is ${format}` };
    base = name.slice(0, -match[0].length);
  }
  base = base.replace(/[<>:"|?*]/g, '_').replace(/[. ]+$/, '');
  if (base === '') return { message: PLAIN_NAME_MESSAGE };
  if (isWindowsReservedName(base)) return { message: `name "${name}" is a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9), whatever follows the first dot; choose another` };
  const fileName = `${base}.${format}`;
  const tooLong = outputNameBytesProblem(fileName);
  return tooLong === undefined ? { fileName } : { message: tooLong };
}
