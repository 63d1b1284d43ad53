/**
 * A map from positive integer keys (hold seqs) to numbers, in two typed
 * arrays with open addressing and linear probing: no allocation per entry
 * and no boxed doubles, unlike a Map with ~10^5 entries whose set/delete
 * cost cache misses and garbage. Deletion shifts entries back, so there are
 * no tombstones. Key 0 marks an empty slot.
 */
export class SeqTable {
  private keys: Float64Array;
  private values: Float64Array;
  private mask: number;
  private shift: number;
  private count = 0;

  constructor(capacity = 1024) {
    if (capacity < 2 || (capacity & (capacity - 1)) !== 0) {
      throw new Error("SeqTable: capacity must be a power of 2");
    }
    this.keys = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
  }

  /** Fibonacci hashing of the low 32 bits: sequential keys spread out, so
   * the runs that probing and deletion walk stay short. */
  private home(key: number): number {
    return Math.imul(key | 0, 0x9e3779b1) >>> this.shift;
  }

  get size(): number {
    return this.count;
  }

  get(key: number): number | undefined {
    const keys = this.keys;
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const k = keys[i]!;
      if (k === key) return this.values[i];
      if (k === 0) return undefined;
    }
  }

  set(key: number, value: number): void {
    if (!(key > 0)) throw new Error(`SeqTable: key ${key} must be positive`);
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys;
    let i = this.home(key);
    for (; keys[i] !== 0; i = (i + 1) & this.mask) {
      if (keys[i] === key) {
        this.values[i] = value;
        return;
      }
    }
    keys[i] = key;
    this.values[i] = value;
    this.count++;
  }

  delete(key: number): boolean {
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let i = this.home(key);
    for (; keys[i] !== key; i = (i + 1) & mask) if (keys[i] === 0) return false;
    // Shift back the entries after it whose home slot the hole now serves.
    for (let j = (i + 1) & mask; keys[j] !== 0; j = (j + 1) & mask) {
      const home = this.home(keys[j]!);
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!between) {
        keys[i] = keys[j]!;
        values[i] = values[j]!;
        i = j;
      }
    }
    keys[i] = 0;
    this.count--;
    return true;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    this.keys = new Float64Array(oldKeys.length * 2);
    this.values = new Float64Array(oldKeys.length * 2);
    this.mask = this.keys.length - 1;
    this.shift = 32 - Math.log2(this.keys.length);
    this.count = 0;
    for (let i = 0; i < oldKeys.length; i++) {
      if (oldKeys[i] !== 0) this.set(oldKeys[i]!, oldValues[i]!);
    }
  }
}
