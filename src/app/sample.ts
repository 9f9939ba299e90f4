import { createHash } from 'node:crypto';
import type { ManifestRow } from '../manifest/index.js';
import type { SamplePick } from '../queue/batches.js';
import type { SampleSelector } from '../queue/producer.js';
import { UsageError } from '../shared/errors.js';

export type { SamplePick } from '../queue/batches.js';

/** What the sample choice needs to know of a row. */
export interface SampleCandidate {
  rowKey: string;
  /** Characters of a text script; 0 for an audio script. */
  scriptLength: number;
  /** Which voice speaks the row (see voiceOf): rows with a voice no earlier pick has get a row of their own. */
  voice: string;
}


/**
 * The voice a row's talk is spoken in: `<provider>:<voice_id>`, `<provider>` when the provider picks its default
 * voice, `default` for D-ID's default voice, `audio` for a recorded script.
 */
export function voiceOf(talk: ManifestRow['talk']): string {
  const script = talk.script;
  if (script.type !== 'text') return 'audio';
  const provider = script.provider;
  if (!provider) return 'default';
  return provider.voice_id === undefined ? provider.type : `${provider.type}:${provider.voice_id}`;
}

export function sampleCandidateOf(row: Pick<ManifestRow, 'rowKey' | 'talk'>): SampleCandidate {
  const script = row.talk.script;
  return { rowKey: row.rowKey, scriptLength: script.type === 'text' ? script.input.length : 0, voice: voiceOf(row.talk) };
}

/** A row's place in the batch's random order: its key hashed with the batch id, so the same batch draws the same rows. */
function drawOf(seed: string, rowKey: string): string {
  return createHash('sha256').update(seed).update('\0').update(rowKey).digest('hex');
}

/** The `size` rows with the smallest draws seen so far, without holding every row: a max-heap on the draw. */
class SmallestDraws {
  readonly #heap: { draw: string; rowKey: string }[] = [];
  constructor(readonly size: number) {}

  offer(draw: string, rowKey: string): void {
    const heap = this.#heap;
    if (heap.length < this.size) {
      heap.push({ draw, rowKey });
      this.#up(heap.length - 1);
    } else if (heap.length > 0 && draw < (heap[0] as { draw: string }).draw) {
      heap[0] = { draw, rowKey };
      this.#down(0);
    }
  }

  /** Smallest draw first. */
  sorted(): string[] {
    return [...this.#heap].sort((a, b) => (a.draw < b.draw ? -1 : a.draw > b.draw ? 1 : 0)).map((entry) => entry.rowKey);
  }

  #up(index: number): void {
    const heap = this.#heap;
    for (let child = index; child > 0; ) {
      const parent = (child - 1) >> 1;
      if ((heap[parent] as { draw: string }).draw >= (heap[child] as { draw: string }).draw) return;
      [heap[parent], heap[child]] = [heap[child] as { draw: string; rowKey: string }, heap[parent] as { draw: string; rowKey: string }];
      child = parent;
    }
  }

  #down(index: number): void {
    const heap = this.#heap;
    for (let parent = index; ; ) {
      let largest = parent;
      for (const child of [2 * parent + 1, 2 * parent + 2]) {
        if (child < heap.length && (heap[child] as { draw: string }).draw > (heap[largest] as { draw: string }).draw) largest = child;
      }
      if (largest === parent) return;
      [heap[parent], heap[largest]] = [heap[largest] as { draw: string; rowKey: string }, heap[parent] as { draw: string; rowKey: string }];
      parent = largest;
    }
  }
}

/**
 * Chooses a sample that covers a sheet, fed one row at a time in manifest order (a sheet of any size, in memory
 * only what a sample of `size` needs): the first row, the row with the longest script, the first row of each
 * voice no earlier pick speaks in (in order of appearance), then rows drawn at random, reproducibly from `seed`
 * (the batch id), until `size`. Pure: the same rows, size and seed give the same picks.
 */
export class SampleChooser {
  readonly #size: number;
  readonly #seed: string;
  #first: SampleCandidate | undefined;
  #longest: SampleCandidate | undefined;
  /** First row of each voice, at most `size` voices (more could never be picked). */
  readonly #voices = new Map<string, SampleCandidate>();
  readonly #draws: SmallestDraws;

  constructor(size: number, seed: string) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('a sample is a whole number of at least 1 rows');
    this.#size = size;
    this.#seed = seed;
    // The first row, the longest one and the voices' rows may all be among the smallest draws: keep enough spare.
    this.#draws = new SmallestDraws(2 * size + 1);
  }

  add(row: SampleCandidate): void {
    this.#first ??= row;
    if (!this.#longest || row.scriptLength > this.#longest.scriptLength) this.#longest = row;
    if (!this.#voices.has(row.voice) && this.#voices.size < this.#size + 1) this.#voices.set(row.voice, row);
    this.#draws.offer(drawOf(this.#seed, row.rowKey), row.rowKey);
  }

  picks(): SamplePick[] {
    const picks: SamplePick[] = [];
    const chosen = new Set<string>();
    const spoken = new Set<string>();
    const pick = (row: SampleCandidate | undefined, reason: string): void => {
      if (!row || picks.length >= this.#size || chosen.has(row.rowKey)) return;
      picks.push({ rowKey: row.rowKey, reason });
      chosen.add(row.rowKey);
      spoken.add(row.voice);
    };
    pick(this.#first, 'first');
    pick(this.#longest, 'longest script');
    for (const [voice, row] of this.#voices) if (!spoken.has(voice)) pick(row, `voice ${voice}`);
    for (const rowKey of this.#draws.sorted()) {
      if (picks.length >= this.#size) break;
      if (chosen.has(rowKey)) continue;
      picks.push({ rowKey, reason: 'random' });
      chosen.add(rowKey);
    }
    return picks;
  }
}

/** SampleChooser over rows already in hand. */
export function chooseSample(rows: Iterable<SampleCandidate>, size: number, seed: string): SamplePick[] {
  const chooser = new SampleChooser(size, seed);
  for (const row of rows) chooser.add(row);
  return chooser.picks();
}

/** What enqueueManifest takes to sample a batch of `size` rows (its seed is the batch id, known only there). */
export function sampleOf(size: number): (batchId: string) => SampleSelector {
  if (!Number.isInteger(size) || size < 1) throw new UsageError('sample must be a whole number of rows, at least 1');
  return (batchId) => {
    const chooser = new SampleChooser(size, batchId);
    return { size, add: (row) => chooser.add(sampleCandidateOf(row)), picks: () => chooser.picks() };
  };
}
