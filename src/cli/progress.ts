/** Redraws at most this often: a terminal cannot show more, and drawing
 * costs time a long replay does not have to spare. */
const progressIntervalMs = 100;

/**
 * A progress line on stderr, redrawn in place with a carriage return. Only
 * on a terminal: a pipe or file gets nothing, so logs stay clean.
 */
export class Progress {
  private readonly enabled: boolean;
  private lastMs = Number.NEGATIVE_INFINITY;
  private shown = false;

  constructor(private readonly label: string) {
    this.enabled = process.stderr.isTTY === true;
  }

  update(text: string): void {
    if (!this.enabled) return;
    const nowMs = performance.now();
    if (nowMs - this.lastMs < progressIntervalMs) return;
    this.lastMs = nowMs;
    process.stderr.write(`\r${this.label}: ${text}\x1b[K`);
    this.shown = true;
  }

  /** Erases the line (before other output, and at the end). */
  clear(): void {
    if (!this.shown) return;
    process.stderr.write("\r\x1b[K");
    this.shown = false;
    // The next update draws at once.
    this.lastMs = Number.NEGATIVE_INFINITY;
  }
}
