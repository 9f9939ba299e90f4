import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { BatchCounts } from '../queue/batches.js';
import type { BatchCredits } from '../queue/credits.js';
import type { ResultRecord } from './results.js';

/** The review page's name inside `out/<batchId>/`, next to the videos it plays. */
export const REVIEW_PAGE_FILE = 'index.html';

export interface ReviewPageOptions {
  /** Shown in the header; defaults to now. Tests pass a fixed time. */
  generatedAt?: Date;
  /** The batch's D-ID balance before and after, and what its talks cost; shown in the header when given. */
  credits?: BatchCredits;
}

/** `credits: 1000 before · 990 after · 10 used · 10 counted for its talks`; empty when nothing is known yet. */
function creditsLine(credits: BatchCredits | undefined): string {
  if (!credits || (credits.before === null && credits.after === null && credits.estimated === 0)) return '';
  const figure = (value: number | null): string => (value === null ? '?' : String(value));
  return (
    `<p class="summary">credits: <b>${figure(credits.before)}</b> before · <b>${figure(credits.after)}</b> after · ` +
    `<b>${figure(credits.used)}</b> used (D-ID's balance) · <b>${credits.estimated}</b> counted for this batch's talks</p>\n`
  );
}

export interface ReviewCounts {
  total: number;
  done: number;
  failed: number;
  /** Active, queued, held and missing rows: anything without a final outcome. */
  other: number;
  /** Of `other`, the rows a sample holds back until the batch is approved. */
  held: number;
}

/** `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attribute values alike. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => HTML_ENTITIES[char] ?? char);
}

const HTML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * A relative link to a file in the batch folder. Each path segment is percent-encoded, so names with
 * `#`, `?`, `%` or spaces still point at the file when the folder is zipped and opened from disk.
 */
export function relativeHref(file: string): string {
  return file
    .split(/[\\/]/)
    .map((segment) => encodeURIComponent(segment))
    .join('/');
}

export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 'B';
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`;
}

function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

export function countRecords(records: readonly ResultRecord[]): ReviewCounts {
  const counts: ReviewCounts = { total: records.length, done: 0, failed: 0, other: 0, held: 0 };
  for (const record of records) {
    if (record.status === 'done') counts.done += 1;
    else if (record.status === 'failed') counts.failed += 1;
    else counts.other += 1;
    if (record.status === 'held') counts.held += 1;
  }
  return counts;
}

// Cards are filtered by a class on <main> (CSS does the hiding), so a click costs one class change
// whatever the batch size. `content-visibility: auto` lets the browser skip layout and paint of
// off-screen cards, which keeps a 2,000-card page quick to open and scroll.
const REVIEW_STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#5b6470;--bg:#f4f5f7;--card:#fff;--line:#d9dde3;--done:#1a7f37;--failed:#cf222e;--other:#9a6700;--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9aa4b0;--bg:#0d1117;--card:#161b22;--line:#30363d;--done:#3fb950;--failed:#f85149;--other:#d29922;--accent:#58a6ff}}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{position:sticky;top:0;z-index:1;padding:12px 20px;background:var(--card);border-bottom:1px solid var(--line);display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center}
h1{font-size:18px;margin:0}
h1 code{font-size:17px}
.summary{margin:0;color:var(--muted)}
.summary b{color:var(--fg)}
nav{display:flex;gap:6px;margin-left:auto}
nav button{font:inherit;padding:4px 12px;border-radius:999px;border:1px solid var(--line);background:var(--bg);color:var(--fg);cursor:pointer}
nav button[aria-pressed=true]{background:var(--accent);border-color:var(--accent);color:#fff}
nav button span{opacity:.75;margin-left:4px}
main{padding:16px 20px;display:grid;gap:12px;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr))}
main.only-done .c:not(.done),main.only-failed .c:not(.failed),main.only-other .c:not(.other){display:none}
.c{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--other);border-radius:8px;padding:12px;display:grid;grid-template-columns:200px 1fr;gap:12px;content-visibility:auto;contain-intrinsic-size:auto 230px;scroll-margin-top:72px}
.c.done{border-left-color:var(--done)}
.c.failed{border-left-color:var(--failed)}
.v{width:200px;aspect-ratio:1;background:#000;border-radius:6px;display:flex;align-items:center;justify-content:center;color:#aaa;text-align:center;padding:8px;font-size:12px}
.v[data-src]{padding:0}
.v:not([data-src]){background:var(--bg);color:var(--muted);border:1px dashed var(--line)}
.v video{width:100%;height:100%;border-radius:6px}
.d{min-width:0}
h2{font-size:14px;margin:0 0 6px;display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
h2 .k{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
h2 .n{color:var(--muted);font-weight:normal}
.b{font-size:11px;text-transform:uppercase;letter-spacing:.04em;padding:1px 8px;border-radius:999px;color:#fff;background:var(--other)}
.done .b{background:var(--done)}
.failed .b{background:var(--failed)}
.c .b.q{background:var(--accent)}
dl{margin:0 0 6px;display:grid;grid-template-columns:max-content 1fr;gap:1px 10px}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
.s{margin:0 0 6px;padding:6px 10px;border-left:3px solid var(--line);white-space:pre-wrap;overflow-wrap:anywhere;max-height:9em;overflow:auto}
.e{margin:0 0 6px;color:var(--failed);overflow-wrap:anywhere}
.m{margin:0;color:var(--muted);font-size:12px;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.m a{color:var(--accent)}
.empty{color:var(--muted)}
nav a{padding:4px 12px;border-radius:999px;border:1px solid var(--line);background:var(--bg);color:var(--fg);text-decoration:none}
nav a[aria-current=page]{background:var(--accent);border-color:var(--accent);color:#fff}
nav a span{opacity:.75;margin-left:4px}
.r{font-size:11px;padding:1px 8px;border-radius:999px;border:1px solid var(--accent);color:var(--accent)}
.held{flex-basis:100%;margin:0;color:var(--other)}
.approve{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;margin:16px 20px 0;padding:12px 16px;background:var(--card);border:1px solid var(--other);border-radius:8px}
.approve p{margin:0}
.approve button{font:inherit;padding:6px 16px;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
.pager{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:center;padding:0 20px;color:var(--muted)}
.pager a{color:var(--accent)}
@media (max-width:520px){.c{grid-template-columns:1fr}.v{width:100%}}
`.trim();

// The filter bar ships `hidden` and this script reveals it: without JavaScript every card simply
// shows. A card's player is created (preload="none", upgraded to "metadata" so its first frame and
// length appear) when the card comes within a screen of the viewport, and removed again, when paused,
// once the card is far away: scrolling through 2,000 rows never holds more than a few screens of players.
const REVIEW_SCRIPT = `
(function () {
  var main = document.getElementById('cards');
  var bar = document.getElementById('filters');
  if (!main || !bar) return;
  var buttons = Array.prototype.slice.call(bar.querySelectorAll('button[data-filter]'));
  var names = buttons.map(function (b) { return b.getAttribute('data-filter'); });
  function show(filter) {
    if (names.indexOf(filter) < 0) filter = 'all';
    names.forEach(function (name) { main.classList.toggle('only-' + name, name === filter && name !== 'all'); });
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.getAttribute('data-filter') === filter)); });
    return filter;
  }
  bar.hidden = false;
  bar.addEventListener('click', function (event) {
    var button = event.target.closest('button[data-filter]');
    if (!button) return;
    var filter = show(button.getAttribute('data-filter'));
    try { history.replaceState(null, '', filter === 'all' ? location.pathname + location.search : '#' + filter); } catch (e) { /* some file:// contexts refuse; the filter still applies */ }
  });
  window.addEventListener('hashchange', function () { show(location.hash.slice(1)); });
  show(location.hash.slice(1));

  var playing = null;
  function attach(slot) {
    if (slot.querySelector('video')) return;
    var video = document.createElement('video');
    video.controls = true;
    video.playsInline = true;
    video.preload = 'none';
    video.src = slot.getAttribute('data-src');
    if (slot.hasAttribute('data-poster')) video.poster = slot.getAttribute('data-poster');
    slot.textContent = '';
    slot.appendChild(video);
    video.preload = 'metadata';
  }
  function detach(slot) {
    var video = slot.querySelector('video');
    if (!video || !video.paused) return;
    video.removeAttribute('src');
    video.load();
    slot.textContent = '';
  }
  var slots = main.querySelectorAll('.v[data-src]');
  if ('IntersectionObserver' in window) {
    var near = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) { if (entry.isIntersecting) attach(entry.target); });
    }, { rootMargin: '100% 0px' });
    var far = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) { if (!entry.isIntersecting) detach(entry.target); });
    }, { rootMargin: '400% 0px' });
    slots.forEach(function (slot) { near.observe(slot); far.observe(slot); });
  } else {
    slots.forEach(attach);
  }
  main.addEventListener('play', function (event) {
    if (playing && playing !== event.target) playing.pause();
    playing = event.target;
  }, true);
})();
`.trim();

const INDEX_STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#5b6470;--bg:#f4f5f7;--card:#fff;--line:#d9dde3;--done:#1a7f37;--failed:#cf222e;--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9aa4b0;--bg:#0d1117;--card:#161b22;--line:#30363d;--done:#3fb950;--failed:#f85149;--accent:#58a6ff}}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:12px 20px;background:var(--card);border-bottom:1px solid var(--line)}
h1{font-size:18px;margin:0}
header p{margin:2px 0 0;color:var(--muted)}
main{padding:16px 20px}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{color:var(--muted);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td a{color:var(--accent);font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.done{color:var(--done)}
.failed{color:var(--failed)}
.bar progress{width:160px}
.empty{color:var(--muted)}
`.trim();

function cspHash(source: string): string {
  return `'sha256-${createHash('sha256').update(source).digest('base64')}'`;
}

/**
 * Only our own inline script and style may run, found by hash: even if some value slipped past
 * escaping, an injected <script> would be refused. Videos load from the page's own folder, which is
 * `'self'` when served over http and a `file:` URL when the folder is opened from disk.
 */
function contentSecurityPolicy(styles: string[], scripts: string[]): string {
  return [
    "default-src 'none'",
    `style-src ${styles.map(cspHash).join(' ')}`,
    `script-src ${scripts.length > 0 ? scripts.map(cspHash).join(' ') : "'none'"}`,
    "media-src 'self' file:",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

const REVIEW_CSP = contentSecurityPolicy([REVIEW_STYLE], [REVIEW_SCRIPT]);
/** The same, for the served page with the approve form: that form may post back to the server that served it. */
const REVIEW_CSP_WITH_FORM = REVIEW_CSP.replace("form-action 'none'", "form-action 'self'");
/** Where the served page puts its approve form (addApproveForm); a comment in the file written to disk. */
const APPROVE_SLOT = '<!-- talkbatch:approve -->';
const INDEX_CSP = contentSecurityPolicy([INDEX_STYLE], []);

function pageHead(title: string, csp: string, style: string): string {
  return (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    // Our own constant (keywords and base64 hashes, no `"` or `&`), written as is to stay readable.
    `<meta http-equiv="Content-Security-Policy" content="${csp}">\n` +
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
    '<meta name="referrer" content="no-referrer">\n' +
    `<title>${escapeHtml(title)}</title>\n<style>${style}</style>\n</head>\n`
  );
}

function statusClass(record: ResultRecord): 'done' | 'failed' | 'other' {
  return record.status === 'done' ? 'done' : record.status === 'failed' ? 'failed' : 'other';
}

/** One card: a few short class names and no inline styles, so 2,000 of them stay around a megabyte. */
function renderCard(record: ResultRecord, hrefPrefix = ''): string {
  const kind = statusClass(record);
  // Ids come from row keys, which are unique in a batch (lines are not: rows added over the API have none).
  const parts: string[] = [`<article class="c ${kind}" id="row-${escapeHtml(record.rowKey)}">`];

  if (record.status === 'done' && record.file) {
    // The player itself is made by the script when the card nears the viewport: 2,000 <video controls>
    // elements parsed up front made Chromium take 4-6 s to open the page (0.7 s without them). Without
    // JavaScript the <noscript> copy is parsed instead, so every video still plays.
    const href = escapeHtml(hrefPrefix + relativeHref(record.file));
    const poster = record.poster ? escapeHtml(hrefPrefix + relativeHref(record.poster)) : undefined;
    const posterAttr = (name: string): string => (poster ? ` ${name}="${poster}"` : '');
    parts.push(`<div class="v" data-src="${href}"${posterAttr('data-poster')}><noscript><video controls preload="none" playsinline src="${href}"${posterAttr('poster')}></video></noscript></div>`);
  } else if (record.status === 'done') {
    parts.push('<div class="v">video file not recorded: the job has expired from Redis; look in the batch folder</div>');
  } else if (record.status === 'held') {
    parts.push('<div class="v">held: made once the batch is approved</div>');
  } else {
    parts.push(`<div class="v">${record.status === 'failed' ? 'no video' : `not finished (${escapeHtml(record.status)})`}</div>`);
  }

  parts.push('<div class="d">');
  // Rows added straight to the queue by another BullMQ client carry no manifest line (0).
  const lineLabel = record.line > 0 ? `<span class="n">line ${record.line}</span>` : '';
  const sampleLabel = record.sampleReason ? `<span class="r">sample: ${escapeHtml(record.sampleReason)}</span>` : '';
  // A video copied from the render cache says so next to its status, which stays "done".
  const cachedBadge = record.cachedFromBatch ? '<span class="b q">cached</span>' : '';
  parts.push(`<h2>${lineLabel}<span class="k">${escapeHtml(record.rowKey)}</span><span class="b">${escapeHtml(record.status)}</span>${cachedBadge}${sampleLabel}</h2>`);
  if (record.status === 'failed') {
    const kindText = record.errorKind ?? 'Error';
    parts.push(`<p class="e"><b>${escapeHtml(kindText)}</b>${record.errorDescription ? `: ${escapeHtml(record.errorDescription)}` : ''}</p>`);
    if (record.errorDetails) parts.push(`<p class="e"><code>${escapeHtml(record.errorDetails)}</code></p>`);
  }
  const inputs = Object.entries(record.input);
  if (inputs.length > 0) {
    parts.push(`<dl>${inputs.map(([name, value]) => `<dt>${escapeHtml(name)}</dt><dd>${escapeHtml(value)}</dd>`).join('')}</dl>`);
  }
  if (record.script) parts.push(`<p class="s">${escapeHtml(record.script)}</p>`);

  const facts: string[] = [];
  if (record.talkId) facts.push(`talk ${escapeHtml(record.talkId)}`);
  if (record.cachedFromBatch) facts.push(`cached from batch ${escapeHtml(record.cachedFromBatch)}`);
  if (record.videoSeconds !== null) facts.push(`${record.videoSeconds} s`);
  if (record.bytes !== null) facts.push(formatBytes(record.bytes));
  // The first 12 hex digits tell files apart at a glance; the full hash is in results.csv.
  if (record.sha256) facts.push(`sha256 ${escapeHtml(record.sha256.slice(0, 12))}…`);
  if (typeof record.credits === 'number') facts.push(`${record.credits} credit${record.credits === 1 ? '' : 's'}${record.creditsSource === 'estimate' ? ' (estimate)' : ''}`);
  if (record.status === 'done' && record.file) facts.push(`<a href="${escapeHtml(hrefPrefix + relativeHref(record.file))}" download>${escapeHtml(record.file)}</a>`);
  if (facts.length > 0) parts.push(`<p class="m">${facts.join(' · ')}</p>`);
  parts.push('</div></article>\n');
  return parts.join('');
}

async function collectSorted(records: ResultRecord[] | AsyncIterable<ResultRecord>): Promise<ResultRecord[]> {
  const all: ResultRecord[] = [];
  if (Array.isArray(records)) all.push(...records);
  else for await (const record of records) all.push(record);
  return all.sort((a, b) => a.line - b.line || (a.rowKey < b.rowKey ? -1 : a.rowKey > b.rowKey ? 1 : 0));
}

/**
 * The batch's review page: one card per row in manifest order, each done row with a player whose
 * source is the video's file name relative to the page, so the folder can be zipped and opened anywhere.
 * Cards are rendered here (visible without JavaScript); the inline script adds the filters and lazy loading.
 */
export async function renderReviewPage(
  batchId: string,
  records: ResultRecord[] | AsyncIterable<ResultRecord>,
  options: ReviewPageOptions = {},
): Promise<string> {
  const rows = await collectSorted(records);
  const counts = countRecords(rows);
  const generatedAt = options.generatedAt ?? new Date();
  const title = `talkbatch ${batchId}`;

  const filterButton = (filter: 'all' | 'done' | 'failed' | 'other', label: string, count: number): string =>
    `<button type="button" data-filter="${filter}" aria-pressed="${filter === 'all'}">${label}<span>${count}</span></button>`;
  const summary = summaryLine(counts, generatedAt);

  const parts: string[] = [
    pageHead(title, REVIEW_CSP, REVIEW_STYLE),
    '<body>\n<header>\n',
    `<h1>Batch <code>${escapeHtml(batchId)}</code></h1>\n`,
    `${summary}\n`,
    heldLine(batchId, counts),
    creditsLine(options.credits),
    '<nav id="filters" aria-label="Filter rows" hidden>',
    filterButton('all', 'All', counts.total),
    filterButton('done', 'Done', counts.done),
    filterButton('failed', 'Failed', counts.failed),
    counts.other > 0 ? filterButton('other', 'Not finished', counts.other) : '',
    `</nav>\n</header>\n${APPROVE_SLOT}\n<main id="cards">\n`,
  ];
  if (rows.length === 0) parts.push('<p class="empty">This batch has no rows.</p>\n');
  for (const record of rows) parts.push(renderCard(record));
  parts.push(`</main>\n<script>${REVIEW_SCRIPT}</script>\n</body>\n</html>\n`);
  return parts.join('');
}

function summaryLine(counts: ReviewCounts, generatedAt: Date): string {
  return (
    `<p class="summary"><b>${counts.total}</b> rows: <b>${counts.done}</b> done, <b>${counts.failed}</b> failed` +
    (counts.other > 0 ? `, <b>${counts.other}</b> not finished` : '') +
    (counts.held > 0 ? ` (<b>${counts.held}</b> held)` : '') +
    ` · generated <time datetime="${generatedAt.toISOString()}">${formatTime(generatedAt)}</time></p>`
  );
}

/** For a sample under review: what is held and how to let it go on. */
function heldLine(batchId: string, counts: ReviewCounts): string {
  if (counts.held === 0) return '';
  return `<p class="held">This is a sample: ${counts.held} more rows are held, un-spent, until the batch is approved (<code>talkbatch approve ${escapeHtml(batchId)}</code>) or cancelled.</p>\n`;
}

export interface ApproveForm {
  /** Where the form posts: a path on the server that serves the page. */
  action: string;
  /** The session's CSRF token, sent back as the form field `csrf`. */
  csrfToken: string;
  /** Rows the approval would make. */
  held: number;
}

/**
 * The served review page of a sample under review, with a form that approves the rest of the batch. Only for
 * the server to send to a session allowed to approve: the page written to disk never has it (it opens from a
 * zip or a file share, where there is nothing to post to). Its CSP then lets forms post to the page's own origin.
 */
export function addApproveForm(html: string, form: ApproveForm): string {
  if (!html.includes(APPROVE_SLOT)) return html;
  const rows = `${form.held} ${form.held === 1 ? 'row' : 'rows'}`;
  const markup =
    `<form class="approve" method="post" action="${escapeHtml(form.action)}">` +
    `<input type="hidden" name="csrf" value="${escapeHtml(form.csrfToken)}">` +
    `<p>Happy with the sample? Approving makes the other ${rows} (D-ID charges for each).</p>` +
    `<button type="submit">Approve the remaining ${rows}</button></form>`;
  // Replacer functions: a replacement string would give `$&`-style sequences a meaning.
  return html.replace(REVIEW_CSP, () => REVIEW_CSP_WITH_FORM).replace(APPROVE_SLOT, () => markup);
}

/** Writes `<dir>/index.html` through a temp file and a rename, so a reader never sees half a page. Returns its path. */
export async function writeReviewPage(
  dir: string,
  batchId: string,
  records: ResultRecord[] | AsyncIterable<ResultRecord>,
  options: ReviewPageOptions = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, REVIEW_PAGE_FILE);
  const temp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temp, await renderReviewPage(batchId, records, options));
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
  return path;
}

/** Up to this many rows the review page is one file (filters by CSS class, as always); above it, pages. */
export const SINGLE_PAGE_MAX_ROWS = 2_000;
/** Cards per page of a paged review (about 0.7 kB each: a page stays well under 2 MB). */
export const REVIEW_PAGE_ROWS = 1_000;
/** Where the pages after the first live, inside the batch folder. */
export const REVIEW_PAGES_DIR = 'pages';

type ReviewView = 'all' | 'done' | 'failed' | 'other';

const VIEW_LABELS: Record<ReviewView, string> = { all: 'All', done: 'Done', failed: 'Failed', other: 'Not finished' };

/** A page's file, relative to the batch folder: page 1 of "all" is index.html itself. */
function pageFile(view: ReviewView, page: number): string {
  return view === 'all' && page === 1 ? REVIEW_PAGE_FILE : `${REVIEW_PAGES_DIR}/${view}-${page}.html`;
}

/** A link from one page to another (pages/ files link up with ../). */
function pageHref(from: string, to: string): string {
  const fromSub = from.startsWith(`${REVIEW_PAGES_DIR}/`);
  const toSub = to.startsWith(`${REVIEW_PAGES_DIR}/`);
  if (fromSub === toSub) return toSub ? to.slice(REVIEW_PAGES_DIR.length + 1) : to;
  return fromSub ? `../${to}` : to;
}

function viewOf(record: ResultRecord): Exclude<ReviewView, 'all'> {
  return statusClass(record);
}

function viewCount(counts: ReviewCounts, view: ReviewView): number {
  return view === 'all' ? counts.total : counts[view];
}

/**
 * The batch's review as pages of REVIEW_PAGE_ROWS cards when it has more than SINGLE_PAGE_MAX_ROWS rows:
 * `index.html` is the first page of all rows, `pages/<view>-<n>.html` the rest, for every filter (all, done,
 * failed, not finished), so a filter covers the whole batch and every page is plain static HTML that opens
 * from disk (links, no fetch). `records` is called twice (counting, then writing) and must give the rows in
 * manifest order, as results.jsonl has them; only one page per view is in memory at a time. Smaller batches
 * get the single page writeReviewPage makes. Pages are written to a temp folder that replaces `pages/`, then
 * `index.html` is renamed into place.
 */
export async function writeReviewPages(
  dir: string,
  batchId: string,
  records: () => AsyncIterable<ResultRecord>,
  options: ReviewPageOptions = {},
): Promise<string> {
  const counts: ReviewCounts = { total: 0, done: 0, failed: 0, other: 0, held: 0 };
  for await (const record of records()) {
    counts.total += 1;
    counts[viewOf(record)] += 1;
    if (record.status === 'held') counts.held += 1;
  }
  const pagesDir = join(dir, REVIEW_PAGES_DIR);
  if (counts.total <= SINGLE_PAGE_MAX_ROWS) {
    const all: ResultRecord[] = [];
    for await (const record of records()) all.push(record);
    const path = await writeReviewPage(dir, batchId, all, options);
    await rm(pagesDir, { recursive: true, force: true });
    return path;
  }

  await mkdir(dir, { recursive: true });
  const generatedAt = options.generatedAt ?? new Date();
  const tempPages = join(dir, `${REVIEW_PAGES_DIR}.${process.pid}.tmp`);
  const oldPages = join(dir, `${REVIEW_PAGES_DIR}.${process.pid}.old`);
  const indexPath = join(dir, REVIEW_PAGE_FILE);
  const indexTemp = `${indexPath}.${process.pid}.tmp`;
  const views: ReviewView[] = ['all', 'done', 'failed', ...(counts.other > 0 ? (['other'] as const) : [])];
  const buffers = new Map<ReviewView, { page: number; cards: string[] }>(views.map((view) => [view, { page: 1, cards: [] }]));
  const pagesOf = (view: ReviewView): number => Math.max(1, Math.ceil(viewCount(counts, view) / REVIEW_PAGE_ROWS));

  const flush = async (view: ReviewView): Promise<void> => {
    const buffer = buffers.get(view) as { page: number; cards: string[] };
    const file = pageFile(view, buffer.page);
    const html = renderPagedReview({ batchId, counts, view, page: buffer.page, pages: pagesOf(view), file, cards: buffer.cards, generatedAt, credits: options.credits });
    await writeFile(file === REVIEW_PAGE_FILE ? indexTemp : join(tempPages, file.slice(REVIEW_PAGES_DIR.length + 1)), html);
    buffer.page += 1;
    buffer.cards = [];
  };

  try {
    await rm(tempPages, { recursive: true, force: true });
    await mkdir(tempPages, { recursive: true });
    for await (const record of records()) {
      for (const view of ['all', viewOf(record)] as const) {
        const buffer = buffers.get(view);
        if (!buffer) continue;
        buffer.cards.push(renderCard(record, view === 'all' && buffer.page === 1 ? '' : '../'));
        if (buffer.cards.length >= REVIEW_PAGE_ROWS) await flush(view);
      }
    }
    // The last, partial page of each view (and an empty first page for a filter no row matches).
    for (const view of views) {
      const buffer = buffers.get(view) as { page: number; cards: string[] };
      if (buffer.cards.length > 0 || buffer.page === 1) await flush(view);
    }
    await rm(oldPages, { recursive: true, force: true });
    await rename(pagesDir, oldPages).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    });
    await rename(tempPages, pagesDir);
    await rename(indexTemp, indexPath);
  } finally {
    await rm(tempPages, { recursive: true, force: true });
    await rm(oldPages, { recursive: true, force: true });
    await rm(indexTemp, { force: true });
  }
  return indexPath;
}

function renderPagedReview(page: {
  batchId: string;
  counts: ReviewCounts;
  view: ReviewView;
  page: number;
  pages: number;
  file: string;
  cards: string[];
  generatedAt: Date;
  credits: BatchCredits | undefined;
}): string {
  const { counts, view, file } = page;
  const filterLink = (target: ReviewView): string => {
    const href = escapeHtml(pageHref(file, pageFile(target, 1)));
    return `<a href="${href}" data-view="${target}"${target === view ? ' aria-current="page"' : ''}>${VIEW_LABELS[target]}<span>${viewCount(counts, target)}</span></a>`;
  };
  const link = (target: number, label: string): string =>
    target >= 1 && target <= page.pages && target !== page.page ? `<a href="${escapeHtml(pageHref(file, pageFile(view, target)))}">${label}</a>` : `<span>${label}</span>`;
  const first = (page.page - 1) * REVIEW_PAGE_ROWS + 1;
  const last = Math.min(page.page * REVIEW_PAGE_ROWS, viewCount(counts, view));
  const pager =
    `<nav class="pager" aria-label="Pages">${link(1, '« first')}${link(page.page - 1, '‹ previous')}` +
    `<span>page <b>${page.page}</b> of <b>${page.pages}</b> · ${VIEW_LABELS[view].toLowerCase()} rows ${last >= first ? `${first}–${last}` : 'none'}</span>` +
    `${link(page.page + 1, 'next ›')}${link(page.pages, 'last »')}</nav>\n`;
  const summary = summaryLine(counts, page.generatedAt);
  return [
    pageHead(`talkbatch ${page.batchId}${page.page > 1 || view !== 'all' ? ` · ${VIEW_LABELS[view].toLowerCase()} ${page.page}/${page.pages}` : ''}`, REVIEW_CSP, REVIEW_STYLE),
    '<body>\n<header>\n',
    `<h1>Batch <code>${escapeHtml(page.batchId)}</code></h1>\n`,
    `${summary}\n`,
    heldLine(page.batchId, counts),
    creditsLine(page.credits),
    `<nav id="filters" aria-label="Filter rows">${filterLink('all')}${filterLink('done')}${filterLink('failed')}${counts.other > 0 ? filterLink('other') : ''}</nav>\n</header>\n`,
    file === REVIEW_PAGE_FILE ? `${APPROVE_SLOT}\n` : '',
    pager,
    '<main id="cards">\n',
    page.cards.length === 0 ? '<p class="empty">No rows here.</p>\n' : '',
    ...page.cards,
    `</main>\n${pager}<script>${REVIEW_SCRIPT}</script>\n</body>\n</html>\n`,
  ].join('');
}

/** The records of a written results.jsonl, streamed line by line. */
export async function* readResultsJsonl(path: string): AsyncGenerator<ResultRecord> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim()) yield JSON.parse(line) as ResultRecord;
  }
}

export interface BatchIndexEntry {
  id: string;
  createdAt: string;
  counts: BatchCounts;
}

export interface BatchIndexOptions {
  /** Where a batch's review page lives, relative to the list page; defaults to `<id>/`. */
  hrefFor?: (batchId: string) => string;
  generatedAt?: Date;
}

/** The list of batches for `talkbatch serve`: one row per batch with its progress, linking to its review page. */
export function renderBatchIndexPage(batches: readonly BatchIndexEntry[], options: BatchIndexOptions = {}): string {
  const hrefFor = options.hrefFor ?? ((id: string) => `${encodeURIComponent(id)}/`);
  const generatedAt = options.generatedAt ?? new Date();
  const percent = (part: number, total: number): string => (total > 0 ? ((part / total) * 100).toFixed(1) : '0');
  const rows = batches.map((batch) => {
    const { total, done, failed } = batch.counts;
    const other = Math.max(0, total - done - failed);
    // A <progress> element, not a styled bar: widths would need inline style attributes, which the CSP refuses.
    return (
      '<tr>' +
      `<td><a href="${escapeHtml(hrefFor(batch.id))}">${escapeHtml(batch.id)}</a></td>` +
      `<td><time datetime="${escapeHtml(batch.createdAt)}">${escapeHtml(batch.createdAt.slice(0, 19).replace('T', ' '))}</time></td>` +
      `<td class="num">${total}</td><td class="num done">${done}</td><td class="num failed">${failed}</td><td class="num">${other}</td>` +
      `<td class="bar"><progress max="${total}" value="${done + failed}" title="${percent(done + failed, total)} % finished">${percent(done + failed, total)} %</progress></td>` +
      '</tr>'
    );
  });
  return (
    pageHead('talkbatch batches', INDEX_CSP, INDEX_STYLE) +
    '<body>\n<header>\n<h1>talkbatch batches</h1>\n' +
    `<p>${batches.length} batches · generated <time datetime="${generatedAt.toISOString()}">${formatTime(generatedAt)}</time></p>\n</header>\n<main>\n` +
    (batches.length === 0
      ? '<p class="empty">No batches yet.</p>\n'
      : '<table>\n<thead><tr><th>Batch</th><th>Created (UTC)</th><th class="num">Rows</th><th class="num">Done</th><th class="num">Failed</th><th class="num">Other</th><th>Progress</th></tr></thead>\n<tbody>\n' +
        `${rows.join('\n')}\n</tbody>\n</table>\n`) +
    '</main>\n</body>\n</html>\n'
  );
}
