/*
 * JSON nesting, measured on the text before it is parsed: a cell nested 100,000 deep parses, but every recursive
 * step after it (stringify, schema checks) overflows the stack. One pass, no recursion, strings skipped.
 */

/** Deep enough for rows, `config` and `voice_config` objects; far below what overflows the stack. */
export const JSON_MAX_DEPTH = 64;

/** The nesting depth of the JSON text, stopping early once it passes `limit`. */
export function jsonDepth(text: string, limit = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === 0x5c) i++; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
      continue;
    }
    if (code === 0x22) inString = true;
    else if (code === 0x7b || code === 0x5b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (code === 0x7d || code === 0x5d) depth--;
  }
  return deepest;
}

/** An issue message when the text nests deeper than JSON_MAX_DEPTH, else undefined. */
export function jsonDepthProblem(text: string, limit = JSON_MAX_DEPTH): string | undefined {
  return jsonDepth(text, limit) > limit ? `JSON nests deeper than ${limit} levels` : undefined;
}
