// Order deadlines: a min-heap of (time, order id) behind one timer. Setting
// a deadline again replaces it (the stale heap entry is skipped when it
// comes up); deleting one forgets it.

interface Entry {
  atMs: number;
  id: string;
}

export class Deadlines {
  private readonly heap: Entry[] = [];
  private readonly current = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Number.POSITIVE_INFINITY;
  private closed = false;

  constructor(
    private readonly now: () => number,
    private readonly due: (id: string) => void,
  ) {}

  get size(): number {
    return this.current.size;
  }

  set(id: string, atMs: number): void {
    if (this.closed) return;
    this.current.set(id, atMs);
    this.push({ atMs, id });
    this.arm();
  }

  delete(id: string): void {
    this.current.delete(id);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private fire(): void {
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0]!.atMs <= now) {
      const e = this.pop();
      if (this.current.get(e.id) !== e.atMs) continue;
      this.current.delete(e.id);
      this.due(e.id);
    }
    this.arm();
  }

  private arm(): void {
    if (this.closed || this.heap.length === 0) return;
    const next = this.heap[0]!.atMs;
    if (this.timer !== null && this.timerAtMs <= next) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtMs = next;
    // setTimeout's limit is 2^31-1 ms; a later deadline re-arms on firing.
    const delayMs = Math.min(Math.max(0, next - this.now()), 2_147_483_647);
    this.timer = setTimeout(() => this.fire(), delayMs);
    this.timer.unref();
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.atMs <= e.atMs) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  private pop(): Entry {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && h[r]!.atMs < h[l]!.atMs ? r : l;
        if (h[c]!.atMs >= last.atMs) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
