/** A FIFO queue on an array with a moving head; compacts when half is dead. */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined as T;
    this.head++;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  toArray(): T[] {
    return this.items.slice(this.head);
  }
}

/** A FIFO of numbers in a growable Float64Array ring: no boxing, no holes. */
export class NumberRing {
  private buf: Float64Array;
  private head = 0;
  private size = 0;

  constructor(capacity = 1024) {
    this.buf = new Float64Array(capacity);
  }

  get length(): number {
    return this.size;
  }

  push(v: number): void {
    if (this.size === this.buf.length) this.grow();
    this.buf[(this.head + this.size) % this.buf.length] = v;
    this.size++;
  }

  /** The oldest value; NaN when empty. */
  peek(): number {
    return this.size === 0 ? Number.NaN : this.buf[this.head]!;
  }

  shift(): number {
    if (this.size === 0) return Number.NaN;
    const v = this.buf[this.head]!;
    this.head = (this.head + 1) % this.buf.length;
    this.size--;
    return v;
  }

  toArray(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.buf[(this.head + i) % this.buf.length]!);
    return out;
  }

  private grow(): void {
    const next = new Float64Array(this.buf.length * 2);
    for (let i = 0; i < this.size; i++) next[i] = this.buf[(this.head + i) % this.buf.length]!;
    this.buf = next;
    this.head = 0;
  }
}
