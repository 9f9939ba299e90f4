/** The bytes to send for one download of the video, decided from its size and the Range header. */
export type VideoResponsePlan =
  | { status: 200 | 206; start: number; endInclusive: number; contentRange?: string }
  | { status: 416; contentRange: string };

/**
 * Plans a response to `Range` like S3 does for one range: `bytes=N-`, `bytes=N-M` and `bytes=-N` give 206;
 * a range starting past the end gives 416; a header it cannot read, or several ranges, is ignored and the
 * whole file is sent (RFC 9110 lets a server ignore Range).
 */
export function planVideoResponse(size: number, rangeHeader: string | undefined): VideoResponsePlan {
  const whole: VideoResponsePlan = { status: 200, start: 0, endInclusive: size - 1 };
  if (rangeHeader === undefined) return whole;
  const match = /^bytes=(\d*)-(\d*)$/.exec(rangeHeader.trim());
  if (!match) return whole;
  const [, firstText = '', lastText = ''] = match;
  const unsatisfiable: VideoResponsePlan = { status: 416, contentRange: `bytes */${size}` };

  let start: number;
  let endInclusive: number;
  if (firstText === '') {
    if (lastText === '') return whole;
    const suffixLength = Number(lastText);
    if (suffixLength === 0 || size === 0) return unsatisfiable;
    start = Math.max(0, size - suffixLength);
    endInclusive = size - 1;
  } else {
    start = Number(firstText);
    if (start >= size) return unsatisfiable;
    endInclusive = lastText === '' ? size - 1 : Math.min(Number(lastText), size - 1);
    if (endInclusive < start) return whole;
  }
  return { status: 206, start, endInclusive, contentRange: `bytes ${start}-${endInclusive}/${size}` };
}

/** S3's XML error document; `extra` adds elements such as <Expires> after <Message>. */
export function s3ErrorXml(code: string, message: string, extra: Record<string, string> = {}): string {
  const escape = (text: string): string => text.replace(/[<>&'"]/g, (char) => `&#${char.charCodeAt(0)};`);
  const elements = Object.entries({ Code: code, Message: message, ...extra })
    .map(([name, value]) => `<${name}>${escape(value)}</${name}>`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${elements}</Error>`;
}
