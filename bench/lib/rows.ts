import { writeFile } from 'node:fs/promises';
import type { ManifestRow } from '../../src/manifest/index.js';

export const IMAGE = 'https://d-id-public-bucket.s3.us-west-2.amazonaws.com/alice.jpg';
export const TEMPLATE = 'Hi {{first_name}}! Thanks for being with {{company}}. I made this short video to show you {{product|what is new this month}}. Talk soon!';

const FIRST = ['Ana', 'Bo', 'Chen', 'Dara', 'Eli', 'Fatima', 'Goran', 'Hana', 'Ivo', 'Jun'];
const COMPANY = ['Northwind', 'Contoso', 'Fabrikam', 'Tailspin Toys', 'Litware', 'Adventure Works'];
const PRODUCT = ['the spring catalogue', 'your renewal offer', 'the new dashboard', ''];

function cells(index: number): { id: string; first_name: string; company: string; product: string } {
  return {
    id: `row${String(index).padStart(6, '0')}`,
    first_name: FIRST[index % FIRST.length] ?? 'Ana',
    company: COMPANY[index % COMPANY.length] ?? 'Northwind',
    product: PRODUCT[index % PRODUCT.length] ?? '',
  };
}

function script(c: ReturnType<typeof cells>): string {
  return `Hi ${c.first_name}! Thanks for being with ${c.company}. I made this short video to show you ${c.product || 'what is new this month'}. Talk soon!`;
}

/** Rows as the manifest reader would make them from benchCsv(): one talk body each. */
export function benchRows(count: number): ManifestRow[] {
  return Array.from({ length: count }, (_, index) => {
    const c = cells(index);
    const text = script(c);
    return {
      line: index + 2,
      rowKey: c.id,
      input: { ...c, image_url: IMAGE },
      talk: { source_url: IMAGE, script: { type: 'text', input: text } },
      outputName: `${c.id}.mp4`,
      estimatedSeconds: Math.max(1, Math.round((text.length / 14) * 10) / 10),
    };
  });
}

/** A CSV manifest of `count` rows for the template above (what users feed `talkbatch enqueue`). */
export async function writeBenchCsv(path: string, count: number): Promise<void> {
  const lines = ['id,first_name,company,product,image_url'];
  for (let index = 0; index < count; index += 1) {
    const c = cells(index);
    lines.push(`${c.id},${c.first_name},${c.company},${c.product},${IMAGE}`);
  }
  await writeFile(path, `${lines.join('\n')}\n`);
}
