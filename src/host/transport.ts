import {
  type AdjustStock,
  type ErrorCode,
  type Failure,
  type FulfilHold,
  fail,
  type Line,
  type PrepareHold,
  type ReceiveStock,
  type ReserveStock,
} from "../engine/index.ts";
import { Op } from "./protocol.ts";

// Commands and answers cross the thread boundary as flat arrays of numbers
// and strings: structured clone copies those ~10x faster than nested objects
// (measured: 1.0 us vs 0.18 us per reserve command, 2.0 us vs 0.03 us per
// answer). Only commands that passed validation on the sending side are
// encoded; the partition validates them again.

/** Appends a validated command's fields. */
export function encodeCommand(op: Op, arg: unknown, out: unknown[]): void {
  switch (op) {
    case Op.Receive: {
      const c = arg as ReceiveStock;
      out.push(c.productId, c.warehouseId, c.quantity);
      return;
    }
    case Op.Adjust: {
      const c = arg as AdjustStock;
      out.push(c.productId, c.warehouseId, c.delta, c.reason);
      return;
    }
    case Op.Reserve: {
      const c = arg as ReserveStock;
      out.push(c.lines.length);
      for (const l of c.lines) out.push(l.productId, l.warehouseId, l.quantity);
      out.push(c.requestId ?? "", c.holdDurationMs ?? 0);
      return;
    }
    case Op.Prepare: {
      const c = arg as PrepareHold;
      out.push(c.lines.length);
      for (const l of c.lines) out.push(l.productId, l.warehouseId, l.quantity);
      out.push(c.expireTimeMs);
      return;
    }
    case Op.Release:
    case Op.Confirm:
    case Op.Abort:
    case Op.Pin:
    case Op.Unpin:
      out.push((arg as { holdId: number }).holdId);
      return;
    case Op.Fulfil: {
      const c = arg as FulfilHold;
      out.push(c.holdId);
      if (c.quantities === undefined) out.push(-1);
      else out.push(c.quantities.length, ...c.quantities);
      return;
    }
    default:
      out.push(arg);
  }
}

/** Reads one command back; `cursor.i` moves past it. */
export function decodeCommand(op: Op, a: unknown[], cursor: { i: number }): unknown {
  let i = cursor.i;
  let cmd: unknown;
  switch (op) {
    case Op.Receive:
      cmd = { productId: a[i], warehouseId: a[i + 1], quantity: a[i + 2] };
      i += 3;
      break;
    case Op.Adjust:
      cmd = { productId: a[i], warehouseId: a[i + 1], delta: a[i + 2], reason: a[i + 3] };
      i += 4;
      break;
    case Op.Reserve: {
      const lines = readLines(a, i);
      i += 1 + lines.length * 3;
      const c: ReserveStock = { lines };
      const requestId = a[i] as string;
      const holdDurationMs = a[i + 1] as number;
      if (requestId !== "") c.requestId = requestId;
      if (holdDurationMs !== 0) c.holdDurationMs = holdDurationMs;
      i += 2;
      cmd = c;
      break;
    }
    case Op.Prepare: {
      const lines = readLines(a, i);
      i += 1 + lines.length * 3;
      cmd = { lines, expireTimeMs: a[i++] };
      break;
    }
    case Op.Release:
    case Op.Confirm:
    case Op.Abort:
    case Op.Pin:
    case Op.Unpin:
      cmd = { holdId: a[i++] };
      break;
    case Op.Fulfil: {
      const c: FulfilHold = { holdId: a[i++] as number };
      const n = a[i++] as number;
      if (n >= 0) {
        c.quantities = a.slice(i, i + n) as number[];
        i += n;
      }
      cmd = c;
      break;
    }
    default:
      cmd = a[i++];
  }
  cursor.i = i;
  return cmd;
}

function readLines(a: unknown[], at: number): Line[] {
  const n = a[at] as number;
  const lines: Line[] = [];
  for (let k = 0, i = at + 1; k < n; k++, i += 3) {
    lines.push({
      productId: a[i] as string,
      warehouseId: a[i + 1] as string,
      quantity: a[i + 2] as number,
    });
  }
  return lines;
}

/** Answers, flat: numbers in one array (kept all-double, so nothing is
 * boxed), strings and objects in another. */
export interface Answers {
  n: number[];
  s: unknown[];
}

export function newAnswers(): Answers {
  return { n: [], s: [] };
}

export interface AnswerCursor {
  i: number;
  j: number;
}

/** Appends an answer: n [1, ...fields], or n [0, lineIndex, available] and
 * s [code, message]. */
export function encodeResult(op: Op, r: unknown, out: Answers): void {
  // biome-ignore lint/suspicious/noExplicitAny: results are the engine's tagged unions
  const x = r as any;
  if (!x.ok) {
    encodeFailure(x as Failure, out);
    return;
  }
  const n = out.n;
  switch (op) {
    case Op.Receive:
    case Op.Adjust: {
      const p = x.position;
      n.push(1, p.available, p.reserved, p.received, p.adjusted, p.fulfilled);
      return;
    }
    case Op.Reserve:
    case Op.Prepare: {
      const v = x.reservation;
      n.push(1, v.holdId, v.expireTimeMs, v.replayed ? 1 : 0);
      return;
    }
    case Op.Release:
    case Op.Confirm:
    case Op.Abort:
    case Op.Pin:
    case Op.Unpin:
      n.push(1, x.holdId);
      return;
    case Op.Fulfil:
      n.push(1, x.holdId, x.quantities.length);
      for (const q of x.quantities) n.push(q);
      return;
    default:
      n.push(1);
      out.s.push(r);
  }
}

export function encodeFailure(f: Failure, out: Answers): void {
  out.n.push(0, f.lineIndex ?? -1, f.available ?? -1);
  out.s.push(f.code, f.message);
}

/** Reads one answer back, given the command it answers. */
export function decodeResult(op: Op, cmd: unknown, a: Answers, cursor: AnswerCursor): unknown {
  const n = a.n;
  let i = cursor.i;
  const ok = n[i++] === 1;
  let r: unknown;
  if (!ok) {
    const extra: Partial<Failure> = {};
    const lineIndex = n[i]!;
    const available = n[i + 1]!;
    if (lineIndex >= 0) extra.lineIndex = lineIndex;
    if (available >= 0) extra.available = available;
    r = fail(a.s[cursor.j] as ErrorCode, a.s[cursor.j + 1] as string, extra);
    cursor.j += 2;
    i += 2;
  } else {
    switch (op) {
      case Op.Receive:
      case Op.Adjust: {
        const c = cmd as ReceiveStock;
        r = {
          ok: true,
          position: {
            productId: c.productId,
            warehouseId: c.warehouseId,
            available: n[i],
            reserved: n[i + 1],
            received: n[i + 2],
            adjusted: n[i + 3],
            fulfilled: n[i + 4],
          },
        };
        i += 5;
        break;
      }
      case Op.Reserve:
      case Op.Prepare: {
        // A replayed answer has the same lines, or it would be REQUEST_ID_REUSED.
        const lines = (cmd as ReserveStock).lines.map((l) => ({
          productId: l.productId,
          warehouseId: l.warehouseId,
          quantity: l.quantity,
        }));
        r = {
          ok: true,
          reservation: { holdId: n[i], expireTimeMs: n[i + 1], lines, replayed: n[i + 2] === 1 },
        };
        i += 3;
        break;
      }
      case Op.Release:
      case Op.Confirm:
      case Op.Abort:
      case Op.Pin:
      case Op.Unpin:
        r = { ok: true, holdId: n[i++] };
        break;
      case Op.Fulfil: {
        const holdId = n[i]!;
        const count = n[i + 1]!;
        r = { ok: true, holdId, quantities: n.slice(i + 2, i + 2 + count) };
        i += 2 + count;
        break;
      }
      default:
        r = a.s[cursor.j++];
    }
  }
  cursor.i = i;
  return r;
}
