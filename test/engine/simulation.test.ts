import { describe, expect, it } from "vitest";
import {
  AdjustmentReason,
  digestPartition,
  ErrorCode,
  type Event,
  EventType,
  type Line,
  limits,
  Partition,
  type PartitionConfig,
  partitionOf,
  partitionOfHold,
  ReleaseReason,
} from "../../src/engine/index.ts";

// A deterministic simulation of stockd's partitions: a seeded PRNG drives
// random commands, clock steps, clock jumps and expiry pulses over several
// partitions, and every step is followed by the invariants of DESIGN.md,
// checked by the partition itself and against a shadow ledger kept here from
// the answers alone. A failure names the seed and the step; rerun it with
// SIM_SEED=<seed> (and SIM_STEPS to change the length).

const partitionCount = 4;
const warehouses = ["w0", "w1", "w2"];
const productCount = 50;
const tickMs = 10;
const config: PartitionConfig = {
  partitionCount,
  holdDurationMs: 60_000,
  idempotencyWindowMs: 10 * 60_000,
  wheelTickMs: tickMs,
};
const idempotencyWindowMs = config.idempotencyWindowMs!;
const T0 = 1_700_000_000_000;

const baseSeed = process.env.SIM_SEED !== undefined ? Number(process.env.SIM_SEED) : 20_251_111;
const stepCount = process.env.SIM_STEPS !== undefined ? Number(process.env.SIM_STEPS) : 100_000;
if (!Number.isSafeInteger(baseSeed) || !(Number.isSafeInteger(stepCount) && stepCount > 0)) {
  throw new Error(`SIM_SEED and SIM_STEPS must be integers (got ${baseSeed}, ${stepCount})`);
}

/** mulberry32: small, fast, and good enough to drive a simulation. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** 0 <= n < max */
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

class InvariantError extends Error {}

interface ReserveCmd {
  lines: Line[];
  requestId?: string;
  holdDurationMs?: number;
}

function check(cond: boolean, message: () => string): void {
  if (!cond) throw new InvariantError(message());
}

interface ShadowPosition {
  received: number;
  adjusted: number;
  fulfilled: number;
  /** Units in the holds the shadow knows to be open. */
  held: number;
}
interface ShadowHold {
  partition: number;
  lines: Line[];
  expireTimeMs: number;
}
interface ShadowRequest {
  timeMs: number;
  holdId: number;
  /** The lines first asked, as JSON: a reuse with other lines is refused. */
  lines: string;
}

/** Everything the simulation knows from the answers it got. */
class Shadow {
  readonly positions = new Map<string, ShadowPosition>();
  readonly open = new Map<number, ShadowHold>();
  /** Holds that ended, with how. */
  readonly ended = new Map<number, string>();
  readonly requests = new Map<string, ShadowRequest>();
  readonly openIds: number[] = [];
  readonly endedIds: number[] = [];
  readonly openCount: number[] = new Array<number>(partitionCount).fill(0);

  add(holdId: number, hold: ShadowHold): void {
    for (const l of hold.lines) this.pos(l.productId, l.warehouseId).held += l.quantity;
    this.open.set(holdId, hold);
    this.openIds.push(holdId);
    this.openCount[hold.partition]!++;
  }

  pos(productId: string, warehouseId: string): ShadowPosition {
    const key = `${productId} ${warehouseId}`;
    let p = this.positions.get(key);
    if (p === undefined) {
      p = { received: 0, adjusted: 0, fulfilled: 0, held: 0 };
      this.positions.set(key, p);
    }
    return p;
  }

  close(holdId: number, how: string): ShadowHold {
    const hold = this.open.get(holdId);
    if (hold === undefined) throw new InvariantError(`hold ${holdId} closed (${how}) but not open`);
    for (const l of hold.lines) this.pos(l.productId, l.warehouseId).held -= l.quantity;
    this.open.delete(holdId);
    this.openCount[hold.partition]!--;
    this.ended.set(holdId, how);
    this.endedIds.push(holdId);
    return hold;
  }

  /** A random open hold (lazy removal keeps picking O(1) amortized). */
  randomOpen(rng: Rng): number | null {
    while (this.openIds.length > 0) {
      const i = rng.int(this.openIds.length);
      const id = this.openIds[i]!;
      if (this.open.has(id)) return id;
      this.openIds[i] = this.openIds[this.openIds.length - 1]!;
      this.openIds.pop();
    }
    return null;
  }
}

class Simulation {
  readonly rng: Rng;
  readonly partitions: Partition[] = [];
  readonly journals: Event[][] = [];
  readonly productsByPartition: string[][] = [];
  readonly shadow = new Shadow();
  now = T0;
  /** Which partitions the current step touched. */
  private touched = new Set<number>();
  readonly counts = new Map<string, number>();
  /** Keyed reserves sent lately, for retries. */
  private readonly sentKeyed: { pid: number; cmd: ReserveCmd }[] = [];

  constructor(readonly seed: number) {
    this.rng = new Rng(seed);
    for (let i = 0; i < partitionCount; i++) {
      this.partitions.push(new Partition(i, config));
      this.journals.push([]);
      this.productsByPartition.push([]);
    }
    for (let i = 0; i < productCount; i++) {
      const id = `sku-${i}`;
      this.productsByPartition[partitionOf(id, partitionCount)]!.push(id);
    }
    for (const ps of this.productsByPartition) expect(ps.length).toBeGreaterThan(3);
  }

  count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
  }

  run(steps: number): void {
    for (let step = 1; step <= steps; step++) {
      try {
        this.step();
        this.checkAfterStep();
      } catch (err) {
        const e = err as Error;
        throw new Error(`seed=${this.seed} step=${step}: ${e.message}`, { cause: e });
      }
    }
    try {
      this.finish();
    } catch (err) {
      throw new Error(`seed=${this.seed} at the end: ${(err as Error).message}`, { cause: err });
    }
  }

  private step(): void {
    this.touched = new Set();
    this.now += this.rng.int(3);
    const r = this.rng.int(1000);
    if (r < 150) this.receive();
    else if (r < 200) this.adjust();
    else if (r < 550) this.reserve();
    else if (r < 650) this.release();
    else if (r < 750) this.fulfil();
    else if (r < 770) this.invalid();
    else if (r < 790) this.boundedPulse();
    else if (r < 995) this.advance(this.rng.int(60));
    else this.jump();
  }

  private partitionOfProduct(productId: string): Partition {
    return this.partitions[partitionOf(productId, partitionCount)]!;
  }

  private randomProduct(): string {
    return this.rng.pick(this.rng.pick(this.productsByPartition));
  }

  private quantity(): number {
    // Mostly scarce stock, so that reservations compete and get refused.
    const r = this.rng.int(10_000);
    if (r < 9_000) return this.rng.range(1, 4);
    if (r < 9_995) return this.rng.range(5, 30);
    return limits.quantityMax;
  }

  private receive(): void {
    const productId = this.randomProduct();
    const warehouseId = this.rng.pick(warehouses);
    const quantity = this.quantity();
    const p = this.partitionOfProduct(productId);
    this.touched.add(p.id);
    const r = p.receiveStock({ productId, warehouseId, quantity }, this.now);
    check(r.ok, () => `receive refused: ${JSON.stringify(r)}`);
    this.shadow.pos(productId, warehouseId).received += quantity;
    this.count("receive");
  }

  private adjust(): void {
    const productId = this.randomProduct();
    const warehouseId = this.rng.pick(warehouses);
    const delta = (this.rng.chance(0.5) ? 1 : -1) * this.rng.range(1, 30);
    const reason = this.rng.pick(Object.values(AdjustmentReason));
    const p = this.partitionOfProduct(productId);
    this.touched.add(p.id);
    const before = p.position(productId, warehouseId)?.available ?? 0;
    const r = p.adjustStock({ productId, warehouseId, delta, reason }, this.now);
    if (r.ok) {
      this.shadow.pos(productId, warehouseId).adjusted += delta;
      this.count("adjust");
    } else {
      check(
        r.code === ErrorCode.InsufficientStock && r.available === before && before + delta < 0,
        () => `adjust ${delta} with ${before} available: ${JSON.stringify(r)}`,
      );
      this.count("adjust refused");
    }
  }

  private reserve(): void {
    if (this.sentKeyed.length > 0 && this.rng.chance(0.1)) {
      // A caller retrying a keyed reserve it sent before, unchanged.
      const { pid, cmd } = this.rng.pick(this.sentKeyed);
      this.reserveIn(pid, { ...cmd, lines: cmd.lines.map((l) => ({ ...l })) });
      return;
    }
    const pid = this.rng.int(partitionCount);
    const products = this.productsByPartition[pid]!;
    const lineCount = this.rng.range(1, 3);
    const lines: Line[] = [];
    const used = new Set<string>();
    for (let i = 0; i < lineCount; i++) {
      const productId = this.rng.pick(products);
      const warehouseId = this.rng.pick(warehouses);
      if (used.has(`${productId} ${warehouseId}`)) continue;
      used.add(`${productId} ${warehouseId}`);
      lines.push({ productId, warehouseId, quantity: this.rng.range(1, 6) });
    }
    const cmd: ReserveCmd = { lines };
    if (this.rng.chance(0.3)) cmd.requestId = `p${pid}-k${this.rng.int(300)}`;
    if (this.rng.chance(0.1)) cmd.holdDurationMs = this.rng.pick([1, 10, 1_000, 30_000, 600_000]);
    if (cmd.requestId !== undefined) {
      if (this.sentKeyed.length < 64) this.sentKeyed.push({ pid, cmd });
      else this.sentKeyed[this.rng.int(64)] = { pid, cmd };
    }
    this.reserveIn(pid, cmd);
  }

  private reserveIn(pid: number, cmd: ReserveCmd): void {
    const p = this.partitions[pid]!;
    this.touched.add(pid);
    const lines = cmd.lines;
    const availableBefore = lines.map(
      (l) => p.position(l.productId, l.warehouseId)?.available ?? 0,
    );
    const r = p.reserve(cmd, this.now);
    const key = cmd.requestId;
    const known = key === undefined ? undefined : this.shadow.requests.get(key);
    const remembered = known !== undefined && known.timeMs > this.now - idempotencyWindowMs;
    if (r.ok) {
      const v = r.reservation;
      if (v.replayed) {
        check(
          remembered && known!.holdId === v.holdId,
          () => `replayed ${v.holdId} for ${key}, first answer ${JSON.stringify(known)}`,
        );
        this.count("reserve replayed");
        return;
      }
      check(
        !remembered,
        () => `request ${key} answered anew within the window: ${JSON.stringify(known)}`,
      );
      check(partitionOfHold(v.holdId) === pid, () => `hold ${v.holdId} is not of partition ${pid}`);
      check(
        !this.shadow.open.has(v.holdId) && !this.shadow.ended.has(v.holdId),
        () => `hold id ${v.holdId} issued twice`,
      );
      const expected = this.now + (cmd.holdDurationMs ?? config.holdDurationMs!);
      check(
        v.expireTimeMs === expected,
        () => `hold ${v.holdId} expires at ${v.expireTimeMs}, not ${expected}`,
      );
      lines.forEach((l, i) => {
        check(
          availableBefore[i]! >= l.quantity,
          () => `line ${i} held ${l.quantity} of ${availableBefore[i]}`,
        );
      });
      this.shadow.add(v.holdId, { partition: pid, lines, expireTimeMs: v.expireTimeMs });
      if (key !== undefined) {
        this.shadow.requests.set(key, {
          timeMs: this.now,
          holdId: v.holdId,
          lines: JSON.stringify(lines),
        });
      }
      this.count("reserve");
      return;
    }
    if (r.code === ErrorCode.RequestIdReused) {
      check(
        remembered && known!.lines !== JSON.stringify(lines),
        () => `REQUEST_ID_REUSED for ${key}, remembered ${JSON.stringify(known)}`,
      );
      this.count("reserve reused");
      return;
    }
    check(r.code === ErrorCode.OutOfStock, () => `reserve: ${JSON.stringify(r)}`);
    if (remembered) {
      check(
        known!.holdId === 0 && known!.lines === JSON.stringify(lines),
        () => `request ${key} answered ${JSON.stringify(known)} first, now ${r.code}`,
      );
      this.count("reserve refused again");
      return;
    }
    const i = r.lineIndex!;
    check(
      r.available === availableBefore[i] && availableBefore[i]! < lines[i]!.quantity,
      () => `OUT_OF_STOCK line ${i} available ${r.available}, was ${availableBefore[i]}`,
    );
    for (let j = 0; j < i; j++) {
      check(
        availableBefore[j]! >= lines[j]!.quantity,
        () => `line ${j} was available but ${i} was named`,
      );
    }
    if (key !== undefined) {
      this.shadow.requests.set(key, { timeMs: this.now, holdId: 0, lines: JSON.stringify(lines) });
    }
    this.count("reserve refused");
  }

  /** An open hold most of the time, else one that ended or never was. */
  private holdToName(): number {
    const open = this.shadow.randomOpen(this.rng);
    if (open !== null && this.rng.chance(0.9)) return open;
    const ended = this.shadow.endedIds;
    if (ended.length > 0 && this.rng.chance(0.7)) {
      // Mostly recent ones (still remembered), sometimes any (maybe forgotten).
      const back = this.rng.chance(0.8) ? Math.min(ended.length, 20) : ended.length;
      return ended[ended.length - 1 - this.rng.int(back)]!;
    }
    return (
      (1_000_000 + this.rng.int(1_000)) * limits.partitionCountMax + this.rng.int(partitionCount)
    );
  }

  private release(): void {
    const holdId = this.holdToName();
    const pid = partitionOfHold(holdId);
    const p = this.partitions[pid]!;
    this.touched.add(pid);
    const r = p.release({ holdId }, this.now);
    this.checkEndAnswer(holdId, r, "release");
    if (r.ok) {
      this.shadow.close(holdId, ErrorCode.HoldReleased);
      this.count("release");
    }
  }

  private fulfil(): void {
    const holdId = this.holdToName();
    const pid = partitionOfHold(holdId);
    const p = this.partitions[pid]!;
    this.touched.add(pid);
    const hold = this.shadow.open.get(holdId);
    const cmd: { holdId: number; quantities?: number[] } = { holdId };
    if (hold !== undefined && this.rng.chance(0.5))
      cmd.quantities = hold.lines.map((l) => this.rng.range(0, l.quantity));
    const r = p.fulfil(cmd, this.now);
    this.checkEndAnswer(holdId, r, "fulfil");
    if (r.ok) {
      const closed = this.shadow.close(holdId, ErrorCode.HoldFulfilled);
      const taken = cmd.quantities ?? closed.lines.map((l) => l.quantity);
      check(
        JSON.stringify(r.quantities) === JSON.stringify(taken),
        () => `fulfilled ${JSON.stringify(r.quantities)}, asked ${JSON.stringify(taken)}`,
      );
      closed.lines.forEach((l, i) => {
        this.shadow.pos(l.productId, l.warehouseId).fulfilled += taken[i]!;
      });
      this.count(cmd.quantities === undefined ? "fulfil" : "fulfil part");
    }
  }

  /** A hold the shadow knows open must be released or fulfilled; any other
   * gets the code of how it ended (or not found once forgotten). */
  private checkEndAnswer(holdId: number, r: { ok: boolean; code?: string }, what: string): void {
    if (this.shadow.open.has(holdId)) {
      check(r.ok, () => `${what} of open hold ${holdId}: ${JSON.stringify(r)}`);
      return;
    }
    check(!r.ok, () => `${what} of hold ${holdId} accepted, but it is not open`);
    const how = this.shadow.ended.get(holdId);
    check(
      r.code === how || r.code === ErrorCode.HoldNotFound,
      () => `${what} of hold ${holdId} (${how ?? "never issued"}): ${r.code}`,
    );
    this.count(`${what} of ended hold`);
  }

  /** A malformed command changes nothing. */
  private invalid(): void {
    const pid = this.rng.int(partitionCount);
    const p = this.partitions[pid]!;
    this.touched.add(pid);
    const productId = this.rng.pick(this.productsByPartition[pid]!);
    const seq = p.seq;
    const bad = this.rng.pick([0, -1, 1.5, Number.NaN, limits.quantityMax + 1]);
    const which = this.rng.int(4);
    const r =
      which === 0
        ? p.receiveStock({ productId, warehouseId: "w0", quantity: bad }, this.now)
        : which === 1
          ? p.reserve({ lines: [{ productId, warehouseId: "w0", quantity: bad }] }, this.now)
          : which === 2
            ? p.adjustStock({ productId, warehouseId: "w 0", delta: 1, reason: 1 }, this.now)
            : p.release({ holdId: 17 }, this.now);
    check(
      !r.ok && r.code === ErrorCode.InvalidArgument,
      () => `bad command answered ${JSON.stringify(r)}`,
    );
    check(p.seq === seq && p.outbox.length === 0, () => "a bad command emitted an event");
    this.count("invalid");
  }

  /** The clock moves on and every partition pulses until nothing is due. */
  private advance(deltaMs: number): void {
    this.now += deltaMs;
    for (const p of this.partitions) this.pulseFully(p);
    this.count("pulse");
  }

  private jump(): void {
    this.advance(this.rng.range(60_000, 3 * 3_600_000));
    this.count("jump");
  }

  /** One pulse of one partition with a small bound: some holds stay due. */
  private boundedPulse(): void {
    const p = this.partitions[this.rng.int(partitionCount)]!;
    this.touched.add(p.id);
    const countMax = this.rng.range(1, 3);
    const from = p.outbox.length;
    const n = p.expire(this.now, countMax);
    check(n <= countMax, () => `pulse expired ${n} > ${countMax}`);
    this.noteExpired(p, from, n);
    this.count("bounded pulse");
  }

  private pulseFully(p: Partition): void {
    this.touched.add(p.id);
    let pulses = 0;
    for (;;) {
      const from = p.outbox.length;
      const n = p.expire(this.now, limits.expireCountMaxPerPulse);
      this.noteExpired(p, from, n);
      if (n < limits.expireCountMaxPerPulse) break;
      check(++pulses < 1_000, () => "pulses do not drain");
    }
    // No hold outlives its deadline by more than one tick after a pulse.
    for (const h of p.holdsInOrder()) {
      check(
        this.now - h.expireTimeMs <= tickMs,
        () => `hold ${h.id} expired at ${h.expireTimeMs}, still open at ${this.now}`,
      );
    }
  }

  /** Reads the expiry events a pulse emitted into the shadow. */
  private noteExpired(p: Partition, from: number, expired: number): void {
    const events = p.outbox.slice(from);
    check(
      events.length === expired,
      () => `pulse expired ${expired} holds in ${events.length} events`,
    );
    for (const e of events) {
      check(e.type === EventType.HoldReleased, () => `pulse emitted event type ${e.type}`);
      if (e.type !== EventType.HoldReleased) continue;
      check(
        e.reason === ReleaseReason.Expired,
        () => `pulse released ${e.holdId} with reason ${e.reason}`,
      );
      const hold = this.shadow.close(e.holdId, ErrorCode.HoldExpired);
      check(
        hold.expireTimeMs <= this.now,
        () => `hold ${e.holdId} expired early: deadline ${hold.expireTimeMs}, now ${this.now}`,
      );
      this.count("expired");
    }
  }

  private checkAfterStep(): void {
    for (const pid of this.touched) {
      const p = this.partitions[pid]!;
      p.checkInvariants();
      const events = p.takeOutbox();
      const journal = this.journals[pid]!;
      for (const e of events) {
        const last = journal[journal.length - 1];
        check(e.seq === (last?.seq ?? 0) + 1, () => `event seq ${e.seq} after ${last?.seq}`);
        check(e.timeMs >= (last?.timeMs ?? 0), () => `event ${e.seq} goes back in time`);
        journal.push(e);
      }
      this.checkConservation(p);
    }
  }

  /** received + adjustments - fulfilled == available + reserved, reserved ==
   * the units of the holds the shadow knows open, for every position. */
  private checkConservation(p: Partition): void {
    const openHere = this.shadow.openCount[p.id]!;
    check(
      openHere === p.holdCount,
      () => `partition ${p.id} has ${p.holdCount} open holds, shadow ${openHere}`,
    );
    for (const x of p.positions.values()) {
      const s = this.shadow.positions.get(`${x.productId} ${x.warehouseId}`);
      const name = `${x.productId}@${x.warehouseId}`;
      check(s !== undefined, () => `${name} exists but was never stocked`);
      check(
        x.available >= 0 && x.reserved >= 0,
        () => `${name} available=${x.available} reserved=${x.reserved}`,
      );
      check(
        s!.received + s!.adjusted - s!.fulfilled === x.available + x.reserved,
        () =>
          `${name}: received ${s!.received} + adjusted ${s!.adjusted} - fulfilled ${s!.fulfilled} != ` +
          `available ${x.available} + reserved ${x.reserved}`,
      );
      check(s!.held === x.reserved, () => `${name}: reserved ${x.reserved}, open holds ${s!.held}`);
      check(
        s!.received === x.received && s!.adjusted === x.adjusted && s!.fulfilled === x.fulfilled,
        () =>
          `${name}: counters ${x.received}/${x.adjusted}/${x.fulfilled}, ` +
          `answers say ${s!.received}/${s!.adjusted}/${s!.fulfilled}`,
      );
    }
  }

  private finish(): void {
    // Every open hold expires in the end; nothing stays reserved.
    this.now += limits.holdDurationMsMax + 1;
    for (const p of this.partitions) this.pulseFully(p);
    this.checkAfterStep();
    for (const p of this.partitions) {
      check(p.holdCount === 0, () => `partition ${p.id} keeps ${p.holdCount} holds`);
      for (const x of p.positions.values())
        check(x.reserved === 0, () => `${x.productId}@${x.warehouseId} keeps reserved`);
    }
    check(this.shadow.open.size === 0, () => `shadow keeps ${this.shadow.open.size} open holds`);
    // Replay: the journal alone rebuilds exactly the live state.
    this.partitions.forEach((live, pid) => {
      const copy = new Partition(pid, config);
      for (const e of this.journals[pid]!) copy.apply(e);
      copy.checkInvariants();
      check(
        digestPartition(copy) === digestPartition(live),
        () => `partition ${pid}: replay differs from live`,
      );
    });
  }
}

function runSeed(seed: number): Simulation {
  const sim = new Simulation(seed);
  sim.run(stepCount);
  return sim;
}

describe("simulation of partitions with a fake clock", () => {
  for (const seed of [baseSeed, baseSeed + 1]) {
    it(`holds every invariant for ${stepCount} steps (seed=${seed})`, () => {
      const sim = runSeed(seed);
      // The run must have exercised what it claims to.
      if (process.env.SIM_VERBOSE !== undefined) console.log(seed, [...sim.counts].sort());
      for (const what of [
        "receive",
        "adjust",
        "adjust refused",
        "reserve",
        "reserve replayed",
        "reserve refused",
        "release",
        "fulfil",
        "fulfil part",
        "expired",
        "bounded pulse",
        "jump",
        "invalid",
        "release of ended hold",
        "fulfil of ended hold",
      ]) {
        expect(sim.counts.get(what) ?? 0, what).toBeGreaterThan(stepCount >= 10_000 ? 10 : 0);
      }
    });
  }

  it("is deterministic: the same seed gives the same journals", () => {
    const steps = 3_000;
    const a = new Simulation(baseSeed);
    a.run(steps);
    const b = new Simulation(baseSeed);
    b.run(steps);
    expect(a.partitions.map(digestPartition)).toEqual(b.partitions.map(digestPartition));
    const c = new Simulation(baseSeed + 7);
    c.run(steps);
    expect(c.partitions.map(digestPartition)).not.toEqual(a.partitions.map(digestPartition));
  });

  it("names the seed and the step when an invariant breaks", () => {
    const sim = new Simulation(baseSeed);
    sim.run(500);
    // Corrupt one position behind the partition's back: the next step that
    // touches that partition must fail, naming seed and step.
    const p = sim.partitions[0]!;
    const victim = [...p.positions.values()][0]!;
    victim.available += 1;
    victim.received += 1;
    expect(() => sim.run(5_000)).toThrow(new RegExp(`^seed=${baseSeed} step=\\d+: `));
  });
});
