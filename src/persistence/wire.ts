// Protobuf wire format, by hand, for the journal's hot path. The schema is
// proto/stockd/v1/*.proto; test/persistence/codec.test.ts proves that what
// this writes, the generated protobuf-es code reads (and the other way round).
// protobuf-es's reflective codec runs at ~150k events/s here, far below what
// the journal and replay need.

import { configureTextEncoding, getTextEncoding } from "@bufbuild/protobuf/wire";

const textEncoder = new TextEncoder();
// ignoreBOM: a string that starts with U+FEFF keeps it. By default the
// decoder drops a leading byte-order mark, so an id "\uFEFFp" came back
// from the journal as "p" and replay gave another state than the live one.
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// protobuf-es (the other gRPC methods, and tools reading the journal) decodes
// strings the same way: every process that loads this codec agrees with it.
const looseDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
configureTextEncoding({
  ...getTextEncoding(),
  decodeUtf8: (bytes, strict) => (strict ? textDecoder : looseDecoder).decode(bytes),
});

export class WireError extends Error {
  override name = "WireError";
}

function utf8(bytes: Uint8Array): string {
  try {
    return textDecoder.decode(bytes);
  } catch {
    throw new WireError("string is not valid UTF-8");
  }
}

export class Writer {
  buf: Uint8Array;
  pos = 0;

  constructor(capacity = 4096) {
    this.buf = new Uint8Array(capacity);
  }

  reset(): void {
    this.pos = 0;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** Unsigned varint of a safe integer (up to 2^53). */
  varint(v: number): void {
    this.ensure(10);
    const b = this.buf;
    let p = this.pos;
    // Above 2^31 bit operations would wrap: divide until it fits, then shift.
    while (v > 0x7fffffff) {
      b[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    while (v >= 0x80) {
      b[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[p++] = v;
    this.pos = p;
  }

  /** A negative int32/int64 as two's complement: 10 bytes. */
  private negativeVarint(v: number): void {
    const big = BigInt.asUintN(64, BigInt(v));
    let x = big;
    this.ensure(10);
    while (x >= 0x80n) {
      this.buf[this.pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }

  tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** uint32/uint64/int64 field with proto3 default omission. */
  uintField(field: number, v: number): void {
    if (v === 0) return;
    this.tag(field, 0);
    if (v < 0) this.negativeVarint(v);
    else this.varint(v);
  }

  /** sint32/sint64 (zigzag) field. */
  sintField(field: number, v: number): void {
    if (v === 0) return;
    this.tag(field, 0);
    this.varint(v < 0 ? -v * 2 - 1 : v * 2);
  }

  boolField(field: number, v: boolean): void {
    if (!v) return;
    this.tag(field, 0);
    this.varint(1);
  }

  stringField(field: number, s: string): void {
    if (s.length === 0) return;
    this.tag(field, 2);
    const n = s.length;
    // Ids are ASCII and short: written as they are checked, in one pass (a
    // one-byte length); anything else goes through UTF-8.
    if (n < 128) {
      this.ensure(n + 1);
      const b = this.buf;
      const p = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p + i] = c;
      }
      if (i === n) {
        b[p - 1] = n;
        this.pos = p + n;
        return;
      }
    }
    const bytes = textEncoder.encode(s);
    this.varint(bytes.length);
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** Starts a length-delimited field; returns a mark for `endLd`. */
  beginLd(field: number): number {
    this.tag(field, 2);
    this.ensure(1);
    this.pos++;
    return this.pos;
  }

  /** Ends a length-delimited field, moving the body when its length needs
   * more than the one byte reserved for it. */
  endLd(mark: number): void {
    const len = this.pos - mark;
    if (len < 0x80) {
      this.buf[mark - 1] = len;
      return;
    }
    let extra = 0;
    for (let v = len; v >= 0x80; v = Math.floor(v / 0x80)) extra++;
    this.ensure(extra);
    this.buf.copyWithin(mark + extra, mark, this.pos);
    let p = mark - 1;
    let v = len;
    while (v >= 0x80) {
      this.buf[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[p] = v;
    this.pos += extra;
  }

  /** A copy of what was written. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

const latin1Slice = Buffer.prototype.latin1Slice as (
  this: Uint8Array,
  start: number,
  end: number,
) => string;

export class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    public end = buf.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    const b = this.buf;
    let p = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (p >= this.end) throw new WireError("truncated varint");
      const byte = b[p++]!;
      result += (byte & 0x7f) * mul;
      if (byte < 0x80) {
        this.pos = p;
        if (result > Number.MAX_SAFE_INTEGER) throw new WireError("varint beyond 2^53");
        return result;
      }
      mul *= 0x80;
    }
    throw new WireError("varint longer than 10 bytes");
  }

  /** int32/int64 that may be negative (10-byte two's complement). */
  int(): number {
    const start = this.pos;
    let n = 0;
    while (start + n < this.end && this.buf[start + n]! >= 0x80 && n < 10) n++;
    if (n < 9) return this.varint();
    // Ten bytes: a negative value in 64-bit two's complement.
    if (start + 10 > this.end) throw new WireError("truncated varint");
    this.pos = start + 10;
    let x = 0n;
    for (let i = 9; i >= 0; i--) x = (x << 7n) | BigInt(this.buf[start + i]! & 0x7f);
    return Number(BigInt.asIntN(64, x));
  }

  sint(): number {
    const v = this.varint();
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
  }

  string(): string {
    const len = this.varint();
    const start = this.pos;
    const end = start + len;
    if (end > this.end) throw new WireError("truncated string");
    this.pos = end;
    const b = this.buf;
    if (len < 256) {
      for (let i = start; i < end; i++) {
        if (b[i]! >= 0x80) return utf8(b.subarray(start, end));
      }
      // ASCII: Node's native latin-1 slice makes one flat string, twice as
      // fast as String.fromCharCode.apply (and no rope, which every Map
      // lookup of the id would flatten again).
      return latin1Slice.call(b, start, end);
    }
    return utf8(b.subarray(start, end));
  }

  /** Starts reading a nested message; returns the outer end to restore. */
  beginLd(): number {
    const len = this.varint();
    const outer = this.end;
    const end = this.pos + len;
    if (end > outer) throw new WireError("truncated message");
    this.end = end;
    return outer;
  }

  endLd(outer: number): void {
    if (this.pos !== this.end) throw new WireError("message length mismatch");
    this.end = outer;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2: {
        const len = this.varint();
        this.pos += len;
        break;
      }
      case 5:
        this.pos += 4;
        break;
      default:
        throw new WireError(`unknown wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new WireError("truncated field");
  }
}
