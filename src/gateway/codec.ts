import { Reader, WireError, Writer } from "../persistence/index.ts";
import type { ApiError } from "./errors.ts";
import type { ReservationOut, ReserveInput } from "./stock.ts";

// The reserve RPCs' messages (proto/stockd/v1/api.proto: ReserveRequest,
// ReserveBatchRequest, ReserveResponse, ReserveBatchResponse) in protobuf
// wire format by hand. They are the hot path: protobuf-es's reflective codec
// spent more CPU on a batch of 1,000 reservations than the engine did.
// test/gateway/codec.test.ts proves the bytes the same as protobuf-es's,
// both ways. A request that does not decode is not an exception here: it
// comes back as `Malformed`, which the handler refuses as INVALID_ARGUMENT.

export interface Malformed {
  malformed: string;
}

export function isMalformed(x: unknown): x is Malformed {
  return typeof x === "object" && x !== null && "malformed" in x;
}

const view = new DataView(new ArrayBuffer(8));

function double(r: Reader): number {
  if (r.pos + 8 > r.end) throw new WireError("truncated double");
  for (let i = 0; i < 8; i++) view.setUint8(i, r.buf[r.pos + i]!);
  r.pos += 8;
  return view.getFloat64(0, true);
}

/** An int64 as a number: beyond ±2^53 it is NaN, which every bound check
 * refuses with INVALID_ARGUMENT (a huge quantity is bad input, not a fault). */
function int64(r: Reader): number {
  const start = r.pos;
  try {
    const v = r.int();
    return Number.isSafeInteger(v) ? v : Number.NaN;
  } catch (err) {
    if (!(err instanceof WireError) || err.message !== "varint beyond 2^53") throw err;
    r.pos = start;
    while (r.pos < r.end && r.buf[r.pos]! >= 0x80) r.pos++;
    r.pos++;
    if (r.pos > r.end) throw new WireError("truncated varint");
    return Number.NaN;
  }
}

function reserveRequest(r: Reader): ReserveInput {
  const input: ReserveInput = { lines: [], holdSeconds: 0, requestId: "" };
  while (!r.done) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 2) {
      const outer = r.beginLd();
      const line = { productId: "", warehouseId: "", quantity: 0 };
      while (!r.done) {
        const t = r.varint();
        if (t === 10) line.productId = r.string();
        else if (t === 18) line.warehouseId = r.string();
        else if (t === 24) line.quantity = int64(r);
        else r.skip(t & 7);
      }
      r.endLd(outer);
      input.lines.push(line);
    } else if (field === 2 && wire === 0) {
      input.holdSeconds = r.varint() % 2 ** 32;
    } else if (field === 3 && wire === 2) {
      input.requestId = r.string();
    } else if (field === 4 && wire === 2) {
      const outer = r.beginLd();
      const place = { latitude: 0, longitude: 0 };
      while (!r.done) {
        const t = r.varint();
        if (t === 9) place.latitude = double(r);
        else if (t === 17) place.longitude = double(r);
        else r.skip(t & 7);
      }
      r.endLd(outer);
      input.shipTo = place;
    } else {
      r.skip(wire);
    }
  }
  return input;
}

export function decodeReserveRequest(bytes: Uint8Array): ReserveInput | Malformed {
  try {
    return reserveRequest(new Reader(bytes));
  } catch (err) {
    return { malformed: `request does not decode: ${(err as Error).message}` };
  }
}

export function decodeReserveBatchRequest(bytes: Uint8Array): ReserveInput[] | Malformed {
  try {
    const r = new Reader(bytes);
    const out: ReserveInput[] = [];
    while (!r.done) {
      const tag = r.varint();
      if (tag !== 10) {
        r.skip(tag & 7);
        continue;
      }
      const len = r.varint();
      const end = r.pos + len;
      if (end > r.end) throw new WireError("truncated message");
      out.push(reserveRequest(new Reader(bytes, r.pos, end)));
      r.pos = end;
    }
    return out;
  } catch (err) {
    return { malformed: `request does not decode: ${(err as Error).message}` };
  }
}

const statusNumber: Record<ReservationOut["status"], number> = {
  OPEN: 1,
  RELEASED: 2,
  EXPIRED: 3,
  FULFILLED: 4,
  ABORTED: 5,
};

function reservation(w: Writer, field: number, out: ReservationOut): void {
  const mark = w.beginLd(field);
  w.stringField(1, String(out.holdId));
  for (const l of out.lines) {
    const m = w.beginLd(2);
    w.stringField(1, l.productId);
    w.stringField(2, l.warehouseId);
    w.uintField(3, l.quantity);
    w.endLd(m);
  }
  w.uintField(3, out.expireTimeMs);
  w.uintField(4, statusNumber[out.status]);
  w.endLd(mark);
}

function reserveResponse(w: Writer, out: ReservationOut): void {
  reservation(w, 1, out);
  w.boolField(2, out.replayed);
}

const writer = new Writer(1 << 16);

function done(w: Writer): Buffer {
  const b = w.buf;
  return Buffer.from(b.buffer.slice(b.byteOffset, b.byteOffset + w.pos));
}

export function encodeReserveResponse(out: ReservationOut): Buffer {
  writer.reset();
  reserveResponse(writer, out);
  return done(writer);
}

export function encodeReserveBatchResponse(results: (ReservationOut | ApiError)[]): Buffer {
  const w = writer;
  w.reset();
  for (const x of results) {
    const result = w.beginLd(1);
    if ("holdId" in x) {
      const ok = w.beginLd(1);
      reserveResponse(w, x);
      w.endLd(ok);
    } else {
      const error = w.beginLd(2);
      w.stringField(1, x.code);
      w.stringField(2, x.message);
      for (const [k, v] of Object.entries(x.details)) {
        const entry = w.beginLd(3);
        w.stringField(1, k);
        w.stringField(2, String(v));
        w.endLd(entry);
      }
      w.endLd(error);
    }
    w.endLd(result);
  }
  return done(w);
}
