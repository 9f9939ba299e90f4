/*
 * What every file system talkbatch writes to accepts: a name of at most 255 bytes (not characters: one `名` is
 * three bytes in UTF-8, one emoji four), and, on Windows and on shares served to Windows, no DOS device name
 * (`CON`, `nul.txt`, `COM1.txt.mp4`: Windows reads the part before the first dot, in any case).
 */

/** Linux (ext4, xfs, btrfs), macOS (APFS counts UTF-8 too) and most shares. */
export const FILE_NAME_MAX_BYTES = 255;

/** What talkbatch appends to an output name while it downloads (`<name>.part`, renamed when verified). */
export const PART_SUFFIX = '.part';

/** The longest final output name (with its .mp4/.mov) that still fits with every suffix talkbatch adds. */
export const OUTPUT_NAME_MAX_BYTES = FILE_NAME_MAX_BYTES - Buffer.byteLength(PART_SUFFIX);

const DOS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)$/i;

/** True for names Windows treats as a device whatever follows the first dot: `con`, `NUL.mp4`, `COM1.txt.mp4`. */
export function isWindowsReservedName(name: string): boolean {
  const stem = name.split('.')[0] ?? '';
  return DOS_DEVICE.test(stem.replace(/[ .]+$/, ''));
}

/** An issue message when a final output file name does not fit, else undefined. */
export function outputNameBytesProblem(fileName: string): string | undefined {
  const bytes = Buffer.byteLength(fileName, 'utf8');
  if (bytes <= OUTPUT_NAME_MAX_BYTES) return undefined;
  return `name is ${bytes} bytes as a file name; at most ${OUTPUT_NAME_MAX_BYTES} fit (file systems allow ${FILE_NAME_MAX_BYTES} bytes, and talkbatch adds "${PART_SUFFIX}" while downloading)`;
}
