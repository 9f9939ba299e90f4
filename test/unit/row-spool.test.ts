import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openManifest, type ManifestRow } from '../../src/manifest/index.js';
import { RowSpool } from '../../src/manifest/row-spool.js';

const dir = mkdtempSync(join(tmpdir(), 'talkbatch-row-spool-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const IMG = 'https://example.com/people/ana.png';

function row(index: number, script: string): ManifestRow {
  return {
    line: index + 2,
    rowKey: `r${index}`,
    input: { id: `r${index}`, script, image_url: IMG },
    talk: { source_url: IMG, script: { type: 'text', input: script } },
    outputName: `r${index}.mp4`,
    estimatedSeconds: 1.5,
  };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function fill(spool: RowSpool, rows: ManifestRow[]): Promise<void> {
  for (const item of rows) {
    const writing = spool.add(item);
    if (writing) await writing;
  }
  await spool.finish();
}

describe('RowSpool', () => {
  it('gives back every row, in order and unchanged, across many buffer writes and multi-byte text', async () => {
    const rows = Array.from({ length: 6000 }, (_, index) => row(index, `Olá ${index} — 你好 👋 "quoted" \\ back\nslash ${'x'.repeat(index % 300)}`));
    const spool = await RowSpool.create();
    try {
      await fill(spool, rows);
      expect(spool.count).toBe(6000);
      expect(await collect(spool.rows())).toEqual(rows);
      // Read twice: the file stays until removed.
      expect((await collect(spool.rows())).length).toBe(6000);
    } finally {
      await spool.remove();
    }
    expect(existsSync(dirname(spool.path))).toBe(false);
  });

  it('keeps a row larger than its write buffer', async () => {
    const big = row(1, 'é'.repeat(700_000)); // 1.4 MB as UTF-8
    const rows = [row(0, 'before'), big, row(2, 'after')];
    const spool = await RowSpool.create();
    try {
      await fill(spool, rows);
      expect(await collect(spool.rows())).toEqual(rows);
    } finally {
      await spool.remove();
    }
  });

  it('refuses to hand back rows when its file was cut short or added to', async () => {
    const spool = await RowSpool.create();
    try {
      await fill(spool, [row(0, 'a'), row(1, 'b')]);
      await appendFile(spool.path, `${JSON.stringify(row(2, 'c'))}\n`);
      await expect(collect(spool.rows())).rejects.toThrow(/holds 3 rows, expected 2/);
    } finally {
      await spool.remove();
    }
  });

  it('is not read before it is finished, nor added to after', async () => {
    const spool = await RowSpool.create();
    try {
      await spool.add(row(0, 'a'));
      await expect(collect(spool.rows())).rejects.toThrow(/not finished/);
      await spool.finish();
      expect(() => spool.add(row(1, 'b'))).toThrow(/finished/);
    } finally {
      await spool.remove();
      await spool.remove(); // twice is fine
    }
  });
});

describe('openManifest validRows()', () => {
  const csv = join(dir, 'people.csv');
  writeFileSync(
    csv,
    ['id,first_name,image_url', `a1,Ana,${IMG}`, 'a2,,not-a-url', `a3,Bo,${IMG}`, ',,', `a4,Chen,${IMG}`].join('\n'),
  );
  const options = { template: 'Hi {{first_name|there}}!' };

  it('yields the same valid rows from the kept copy as from reading the sheet again, and close() deletes the copy', async () => {
    const manifest = await openManifest(csv, options);
    try {
      const reread = await collect(manifest.validRows());
      const report = await manifest.validate({ keepValidRows: true });
      expect(report.valid).toBe(3);
      const kept = await collect(manifest.validRows());
      expect(kept).toEqual(reread);
      expect(kept.map((item) => item.rowKey)).toEqual(['a1', 'a3', 'a4']);
    } finally {
      await manifest.close();
    }
  });

  it('reads the sheet again once a later validate did not keep the rows', async () => {
    const manifest = await openManifest(csv, options);
    try {
      await manifest.validate({ keepValidRows: true });
      await manifest.validate({ keepValidRows: true });
      await manifest.validate();
      expect((await collect(manifest.validRows())).map((item) => item.rowKey)).toEqual(['a1', 'a3', 'a4']);
    } finally {
      await manifest.close();
    }
  });
});
