import { formatIssue, ManifestError, type ManifestIssue } from '../manifest/index.js';

/** Prints manifest issues (from an error or a list); returns false when `value` holds none. */
export function printIssues(value: unknown, limit = 50): boolean {
  const issues: ManifestIssue[] | undefined = value instanceof ManifestError ? value.issues : Array.isArray(value) ? (value as ManifestIssue[]) : undefined;
  if (!issues) return false;
  for (const issue of issues.slice(0, limit)) process.stderr.write(`${formatIssue(issue)}\n`);
  if (issues.length > limit) process.stderr.write(`... and ${issues.length - limit} more (talkbatch validate lists them all)\n`);
  if (value instanceof ManifestError) process.stderr.write(`${issues.length} problem${issues.length === 1 ? '' : 's'} found; nothing was enqueued.\n`);
  return true;
}
