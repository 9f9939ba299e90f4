import { parseArgs } from 'node:util';
import { formatIssue, validateManifest } from '../../manifest/index.js';
import { loadConfig } from '../../config/index.js';
import { BILLING_RULE } from '../../did/billing.js';
import { creditPreflight } from '../batch-flags.js';
import { printIssues } from '../output.js';
import { MANIFEST_HELP, MANIFEST_OPTIONS, manifestArgs } from '../manifest-flags.js';

export const VALIDATE_HELP = `Usage: talkbatch validate <manifest> [options]

Checks every row without spending anything or touching Redis: lists every problem with its line and
column, counts rows, and estimates the seconds of video the batch will make and the D-ID credits they
will cost (${BILLING_RULE}; the script's length estimates the video's; see docs/operations.md "Credits").

Options:
  --json                 print the report as JSON
${MANIFEST_HELP}
  -h, --help             this help

Exit codes: 0 no problems, 1 problems found in rows, 2 usage error or a manifest that cannot be read.`;

export async function validateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...MANIFEST_OPTIONS, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(VALIDATE_HELP);
    return 0;
  }
  const { manifest, options } = manifestArgs(values, positionals, 'validate');
  let report;
  try {
    report = await validateManifest(manifest, options);
  } catch (error) {
    // The source could not be opened or read at all (missing file, a 404, nothing on stdin).
    if (printIssues(error)) return 2;
    throw error;
  }
  if (values.json) {
    console.log(JSON.stringify({ ...report, creditRule: BILLING_RULE }, null, 2));
  } else {
    for (const issue of report.issues) console.log(formatIssue(issue));
    for (const warning of report.warnings) console.log(`warning: ${formatIssue(warning)}`);
    const invalid = report.rows - report.valid - report.skippedEmpty;
    console.log(
      `${report.file}: ${report.rows} rows (${report.format}), ${report.valid} valid, ${invalid} invalid, ${report.skippedEmpty} empty skipped; ` +
        `${report.issues.length} problem${report.issues.length === 1 ? '' : 's'}; about ${Math.round(report.estimatedSeconds)} s of video`,
    );
    console.log(`about ${report.estimatedCredits} D-ID credit${report.estimatedCredits === 1 ? '' : 's'} (estimate: ${BILLING_RULE}, per talk, on ~14 characters a second of script plus pad_audio)`);
  }
  // A credit check costs nothing, so validate does it too when a key is configured.
  await creditPreflight(loadConfig(), report.valid, report.estimatedSeconds, report.estimatedCredits, (line) => process.stderr.write(`${line}\n`));
  return report.issues.length > 0 ? 1 : 0;
}
