import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BatchCounts } from '../../src/queue/batches.js';
import type { ResultRecord } from '../../src/report/results.js';
import { escapeHtml, relativeHref, renderBatchIndexPage, renderReviewPage, writeReviewPage } from '../../src/report/review-page.js';

const GENERATED_AT = new Date('2026-11-25T07:15:02Z');

function record(line: number, overrides: Partial<ResultRecord> = {}): ResultRecord {
  const rowKey = `p${line}`;
  return {
    line,
    rowKey,
    jobId: `b-${rowKey}`,
    status: 'done',
    talkId: `tlk_${rowKey}AbCdEfGhIjKlMnOp`,
    file: `${rowKey}.mp4`,
    bytes: 1_234_567,
    sha256: 'a1b2c3d4e5f6'.repeat(5).slice(0, 64).padEnd(64, '0'),
    videoSeconds: 12.4,
    renderSeconds: 31.5,
    attempts: 1,
    errorKind: null,
    errorDescription: null,
    script: `Hello Person ${line} from Company ${line}, here is the personalised video we promised you last week.`,
    enqueuedAt: '2026-11-25T07:00:00.000Z',
    finishedAt: '2026-11-25T07:01:00.000Z',
    input: { id: rowKey, first_name: `Person ${line}`, company: `Company ${line}`, image_url: `https://example.com/faces/${rowKey}.png` },
    ...overrides,
  };
}

function failed(line: number, overrides: Partial<ResultRecord> = {}): ResultRecord {
  return record(line, {
    status: 'failed',
    file: null,
    bytes: null,
    sha256: null,
    videoSeconds: null,
    errorKind: 'FaceError',
    errorDescription: 'Failed to detect a face in the source image',
    ...overrides,
  });
}

/** The article elements of a page, in document order, as their raw HTML. */
function cards(html: string): string[] {
  return html.match(/<article[\s\S]*?<\/article>/g) ?? [];
}

const HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">\'"&';

describe('review page', () => {
  it('escapes everything a row supplies, so a manifest cannot inject markup', async () => {
    const html = await renderReviewPage('batch-1', [
      record(2, {
        rowKey: 'p2',
        file: 'a "quoted" #1?.mp4',
        script: `Hi ${HOSTILE}`,
        talkId: `tlk_${HOSTILE}`,
        input: { [`col${HOSTILE}`]: `value${HOSTILE}`, first_name: '</dd></dl></article><script>alert(2)</script>' },
      }),
      failed(3, { errorKind: `Kind${HOSTILE}`, errorDescription: `Description${HOSTILE}` }),
    ], { generatedAt: GENERATED_AT });

    // The page's own inline script is the only script element; nothing a row said became a tag.
    expect(html.match(/<script/gi)).toHaveLength(1);
    expect(html).not.toContain('<img');
    expect(html).not.toContain('onerror="');
    expect(html).not.toContain('</dd></dl></article><script>');
    expect(html).toContain(escapeHtml(`value${HOSTILE}`));
    expect(html).toContain(escapeHtml(`col${HOSTILE}`));
    expect(html).toContain(`Hi ${escapeHtml(HOSTILE)}`);
    expect(html).toContain(`<b>Kind${escapeHtml(HOSTILE)}</b>: Description${escapeHtml(HOSTILE)}`);
    expect(escapeHtml(HOSTILE)).toBe('&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#39;&quot;&amp;');

    // A file name with quotes and URL syntax stays one attribute and one relative link.
    expect(relativeHref('a "quoted" #1?.mp4')).toBe('a%20%22quoted%22%20%231%3F.mp4');
    expect(html).toContain('data-src="a%20%22quoted%22%20%231%3F.mp4"');
    expect(html).toContain('<video controls preload="none" playsinline src="a%20%22quoted%22%20%231%3F.mp4"></video>');

    // Defence in depth: only the page's own script, by hash, may run.
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).not.toContain('unsafe-inline');
  });

  it('renders one card per row in manifest order, with counts, filters, players and failures', async () => {
    const rows = [record(5), failed(3), record(2), record(4, { status: 'queued', file: null, talkId: null, bytes: null, sha256: null })];
    const html = await renderReviewPage('batch-2', rows, { generatedAt: GENERATED_AT });

    const all = cards(html);
    expect(all.map((card) => /id="row-([^"]+)"/.exec(card)?.[1])).toEqual(['p2', 'p3', 'p4', 'p5']);
    expect(html).toContain('<h1>Batch <code>batch-2</code></h1>');
    expect(html).toContain('<b>4</b> rows: <b>2</b> done, <b>1</b> failed, <b>1</b> not finished');
    expect(html).toContain('<time datetime="2026-11-25T07:15:02.000Z">2026-11-25 07:15:02 UTC</time>');
    expect(html).toMatch(/data-filter="all" aria-pressed="true">All<span>4<\/span>/);
    expect(html).toMatch(/data-filter="done" aria-pressed="false">Done<span>2<\/span>/);
    expect(html).toMatch(/data-filter="failed" aria-pressed="false">Failed<span>1<\/span>/);
    expect(html).toMatch(/data-filter="other" aria-pressed="false">Not finished<span>1<\/span>/);
    // Without JavaScript the filter bar stays hidden and every card shows.
    expect(html).toMatch(/<nav id="filters"[^>]* hidden>/);

    const [done, fail, queued] = all;
    expect(done).toContain('class="c done"');
    expect(done).toContain('data-src="p2.mp4"');
    expect(done).toContain('talk tlk_p2AbCdEfGhIjKlMnOp · 12.4 s · 1.2 MB · sha256 a1b2c3d4e5f6…');
    expect(done).toContain('<a href="p2.mp4" download>p2.mp4</a>');
    expect(done).toContain('<dt>first_name</dt><dd>Person 2</dd>');
    expect(done).toContain('<p class="s">Hello Person 2 from Company 2');
    expect(fail).toContain('class="c failed"');
    expect(fail).not.toContain('<video');
    expect(fail).toContain('<p class="e"><b>FaceError</b>: Failed to detect a face in the source image</p>');
    expect(queued).toContain('class="c other"');
    expect(queued).toContain('not finished (queued)');
  });

  it('takes an async iterable, as streamed from Redis or results.jsonl', async () => {
    async function* stream(): AsyncGenerator<ResultRecord> {
      yield record(3);
      yield record(2);
    }
    const html = await renderReviewPage('streamed', stream(), { generatedAt: GENERATED_AT });
    expect(cards(html).map((card) => /id="row-([^"]+)"/.exec(card)?.[1])).toEqual(['p2', 'p3']);
  });

  it('says so when a done row has no recorded file, and when a batch is empty', async () => {
    const html = await renderReviewPage('expired', [record(2, { file: null })], { generatedAt: GENERATED_AT });
    expect(html).toContain('video file not recorded');
    expect(html).not.toContain('<video');
    expect(await renderReviewPage('empty', [], { generatedAt: GENERATED_AT })).toContain('This batch has no rows.');
  });

  it('stays under 2 MB for 2,000 typical rows', async () => {
    const rows = Array.from({ length: 2_000 }, (_, index) => (index % 10 === 3 ? failed(index + 2) : record(index + 2)));
    const html = await renderReviewPage('big', rows, { generatedAt: GENERATED_AT });
    const bytes = Buffer.byteLength(html);
    console.info(`review page for 2,000 rows: ${bytes} bytes (${Math.round(bytes / 2_000)} per row)`);
    expect(cards(html)).toHaveLength(2_000);
    expect(bytes).toBeLessThan(2_000_000);
    // The players are made lazily by the script; only <noscript> copies are in the markup.
    expect(html.match(/<video /g)).toHaveLength(1_800);
    expect(html.match(/<noscript><video /g)).toHaveLength(1_800);
  });

  it('writes index.html atomically, leaving no temp file behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tb-review-'));
    const path = await writeReviewPage(dir, 'atomic', [record(2)], { generatedAt: GENERATED_AT });
    expect(path).toBe(join(dir, 'index.html'));
    expect(await readdir(dir)).toEqual(['index.html']);
    expect(await readFile(path, 'utf8')).toBe(await renderReviewPage('atomic', [record(2)], { generatedAt: GENERATED_AT }));
  });
});

describe('batch index page', () => {
  const counts = (total: number, done: number, failedRows: number): BatchCounts => ({ total, done, failed: failedRows, active: 0, queued: total - done - failedRows, held: 0 });

  it('lists batches with their progress and links to their review pages, escaped', () => {
    const html = renderBatchIndexPage(
      [
        { id: '20261125-071502-a1b2c3', createdAt: '2026-11-25T07:15:02.000Z', counts: counts(50, 40, 2) },
        { id: `odd${HOSTILE}`, createdAt: '2026-11-24T10:00:00.000Z', counts: counts(0, 0, 0) },
      ],
      { generatedAt: GENERATED_AT },
    );
    expect(html).toContain('<a href="20261125-071502-a1b2c3/">20261125-071502-a1b2c3</a>');
    expect(html).toContain('<td class="num">50</td><td class="num done">40</td><td class="num failed">2</td><td class="num">8</td>');
    expect(html).toContain('<progress max="50" value="42" title="84.0 % finished">84.0 %</progress>');
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img');
    expect(html).toContain(`>odd${escapeHtml(HOSTILE)}</a>`);
    expect(html).toContain(`href="${escapeHtml(encodeURIComponent(`odd${HOSTILE}`))}/"`);
  });

  it('takes the server its own link scheme, and says when there are no batches', () => {
    const html = renderBatchIndexPage([{ id: 'b1', createdAt: '2026-11-25T07:15:02.000Z', counts: counts(1, 1, 0) }], { hrefFor: (id) => `/batches/${id}/review` });
    expect(html).toContain('<a href="/batches/b1/review">b1</a>');
    expect(renderBatchIndexPage([])).toContain('No batches yet.');
  });
});
