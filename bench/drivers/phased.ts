// Warm-up, measure, drain for load made of promise-returning sessions (one
// request, or a chain of them): closed loop (`clients` loops, each starting
// the next session when its last one ended) or open loop (sessions started
// evenly at a fixed rate whatever came back, at most `inFlightMax`
// outstanding). A session counts what it sees while `phase` is "measure";
// the caller hears when measuring starts and ends, to read CPU counters.

import { drainMsMax, sleep } from "./common.ts";

/** How often the open loop looks at the clock; between looks it starts what
 * fell due, so starts come in bursts of rate/1000 at most. */
const tickMs = 1;

export type Phase = "warmup" | "measure" | "drain";

export interface PhasedOptions {
  clients: number;
  /** undefined: closed loop. */
  ratePerS: number | undefined;
  /** Open loop: sessions outstanding at most. */
  inFlightMax: number;
  warmupMs: number;
  durationMs: number;
  onPhase(mark: "measure" | "drain"): void;
}

/** A session; `dueMs` is when it fell due (open loop: latency counts from
 * there, so a wait for a free connection is the server's to answer for). */
export type Session = (slot: number, dueMs: number) => Promise<void>;

export class Phased {
  phase: Phase = "warmup";
  /** Open loop: sessions due while `inFlightMax` were outstanding. */
  skipped = 0;
  /** Sessions that threw (a bug or an answer that could not be read), in
   * the measured window; the first one's message. */
  failed = 0;
  firstFailure: string | null = null;
  private inFlight = 0;

  constructor(private readonly o: PhasedOptions) {}

  get measuring(): boolean {
    return this.phase === "measure";
  }

  /** Runs the phases; answers the measured window's length. */
  async run(unsafe: Session): Promise<{ elapsedMs: number }> {
    const session: Session = (slot, dueMs) =>
      unsafe(slot, dueMs).catch((err: unknown) => {
        if (this.measuring) this.failed++;
        this.firstFailure ??= (err as Error).message ?? String(err);
      });
    const track = (p: Promise<void>) => {
      this.inFlight++;
      void p.finally(() => this.inFlight--);
    };
    let stop = () => {};
    if (this.o.ratePerS === undefined) {
      for (let slot = 0; slot < this.o.clients; slot++) {
        track(
          (async () => {
            while (this.phase !== "drain") await session(slot, performance.now());
          })(),
        );
      }
    } else {
      stop = this.fixedRate(this.o.ratePerS, (slot, dueMs) => {
        if (this.inFlight < this.o.inFlightMax) track(session(slot, dueMs));
        else if (this.measuring) this.skipped++;
      });
    }
    await sleep(this.o.warmupMs);
    this.phase = "measure";
    this.o.onPhase("measure");
    const t0 = performance.now();
    await sleep(this.o.durationMs);
    const elapsedMs = performance.now() - t0;
    this.phase = "drain";
    this.o.onPhase("drain");
    stop();
    for (let waited = 0; this.inFlight > 0 && waited < drainMsMax; waited += 10) await sleep(10);
    return { elapsedMs };
  }

  private fixedRate(ratePerS: number, start: (slot: number, dueMs: number) => void): () => void {
    const t0 = performance.now();
    const intervalMs = 1000 / ratePerS;
    let started = 0;
    let timer: NodeJS.Timeout | null = null;
    const tick = () => {
      // Latency counts from this look at the clock, not from when each
      // session fell due: the timer's own lateness is the sender's.
      const nowMs = performance.now();
      const due = Math.floor((nowMs - t0) / intervalMs);
      for (; started < due; started++) start(started, nowMs);
      timer = setTimeout(tick, tickMs);
    };
    tick();
    return () => {
      if (timer !== null) clearTimeout(timer);
    };
  }
}
