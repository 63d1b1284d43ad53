import { once } from "node:events";

/** Bytes gathered before one write to stdout: few system calls for a long
 * dump, and little memory. */
const outputChunkBytes = 64 * 1024;

/**
 * Standard output for long listings: lines are gathered into chunks, and a
 * chunk waits for the pipe to drain, so that a dump of millions of events
 * neither piles up in memory nor loses its tail at exit.
 */
export class Output {
  private chunks: string[] = [];
  private size = 0;

  line(text: string): void {
    this.chunks.push(text, "\n");
    this.size += text.length + 1;
  }

  /** True when the caller should `await flush()` before more lines. */
  get full(): boolean {
    return this.size >= outputChunkBytes;
  }

  async flush(): Promise<void> {
    if (this.size === 0) return;
    const data = this.chunks.join("");
    this.chunks = [];
    this.size = 0;
    if (!process.stdout.write(data)) await once(process.stdout, "drain");
  }
}

/** A diagnostic on stderr, one line. */
export function warn(message: string): void {
  process.stderr.write(`stockd: ${message}\n`);
}

/** 1234567 -> "1,234,567". */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** (1, "record") -> "1 record"; (2, "record") -> "2 records". */
export function counted(n: number, noun: string): string {
  return `${count(n)} ${noun}${n === 1 ? "" : "s"}`;
}
