import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeReserveBatchRequest,
  decodeReserveRequest,
  encodeReserveBatchResponse,
  encodeReserveResponse,
  isMalformed,
} from "../../src/gateway/codec.ts";
import { ApiError } from "../../src/gateway/errors.ts";
import type { ReservationOut } from "../../src/gateway/stock.ts";
import {
  ReservationStatus,
  ReserveBatchRequestSchema,
  ReserveBatchResponseSchema,
  ReserveRequestSchema,
  ReserveResponseSchema,
} from "../../src/gen/stockd/v1/api_pb.ts";

// The hand-written codec of the reserve RPCs against the generated
// protobuf-es code: what one writes, the other reads, the same.

const id = fc.string({ minLength: 0, maxLength: 60, unit: "grapheme" });
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const line = fc.record({ productId: id, warehouseId: id, quantity: int64 });
const request = fc.record({
  lines: fc.array(line, { maxLength: 5 }),
  holdSeconds: fc.nat({ max: 2 ** 32 - 1 }),
  requestId: id,
  shipTo: fc.option(
    fc.record({
      latitude: fc.double({ noNaN: true }),
      longitude: fc.double({ noNaN: true }),
    }),
    { nil: undefined },
  ),
});

function expectSameInput(decoded: unknown, r: unknown): void {
  const want = r as {
    lines: { productId: string; warehouseId: string; quantity: bigint }[];
    holdSeconds: number;
    requestId: string;
    shipTo?: { latitude: number; longitude: number };
  };
  const safe = (q: bigint) =>
    q >= -(2n ** 53n) + 1n && q <= 2n ** 53n - 1n ? Number(q) : Number.NaN;
  expect(decoded).toEqual({
    lines: want.lines.map((l) => ({ ...l, quantity: safe(l.quantity) })),
    holdSeconds: want.holdSeconds,
    requestId: want.requestId,
    ...(want.shipTo === undefined ? {} : { shipTo: want.shipTo }),
  });
}

describe("reserve codec", () => {
  it("reads every ReserveRequest protobuf-es writes (int64 past 2^53 as NaN)", () => {
    fc.assert(
      fc.property(request, (r) => {
        const bytes = toBinary(ReserveRequestSchema, create(ReserveRequestSchema, r));
        const decoded = decodeReserveRequest(bytes);
        expect(isMalformed(decoded)).toBe(false);
        expectSameInput(decoded, r);
      }),
    );
  });

  it("reads every ReserveBatchRequest protobuf-es writes", () => {
    fc.assert(
      fc.property(fc.array(request, { maxLength: 8 }), (requests) => {
        const bytes = toBinary(
          ReserveBatchRequestSchema,
          create(ReserveBatchRequestSchema, { requests }),
        );
        const decoded = decodeReserveBatchRequest(bytes);
        if (isMalformed(decoded)) throw new Error(decoded.malformed);
        expect(decoded).toHaveLength(requests.length);
        decoded.forEach((d, i) => {
          expectSameInput(d, requests[i]!);
        });
      }),
    );
  });

  const out: fc.Arbitrary<ReservationOut> = fc.record({
    holdId: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    status: fc.constantFrom("OPEN", "RELEASED", "EXPIRED", "FULFILLED", "ABORTED"),
    lines: fc.array(
      fc.record({ productId: id, warehouseId: id, quantity: fc.integer({ min: 1, max: 1e9 }) }),
      { maxLength: 4 },
    ),
    expireTimeMs: fc.integer({ min: 0, max: 2 ** 50 }),
    replayed: fc.boolean(),
  });

  const statusOf = {
    OPEN: ReservationStatus.OPEN,
    RELEASED: ReservationStatus.RELEASED,
    EXPIRED: ReservationStatus.EXPIRED,
    FULFILLED: ReservationStatus.FULFILLED,
    ABORTED: ReservationStatus.ABORTED,
  };

  const asMessage = (o: ReservationOut) =>
    create(ReserveResponseSchema, {
      reservation: {
        id: String(o.holdId),
        status: statusOf[o.status],
        lines: o.lines.map((l) => ({ ...l, quantity: BigInt(l.quantity) })),
        expireTimeMs: BigInt(o.expireTimeMs),
      },
      replayed: o.replayed,
    });

  it("writes ReserveResponse bytes protobuf-es reads, byte for byte what it writes", () => {
    fc.assert(
      fc.property(out, (o) => {
        const ours = encodeReserveResponse(o);
        const theirs = toBinary(ReserveResponseSchema, asMessage(o));
        expect(new Uint8Array(ours)).toEqual(theirs);
        expect(fromBinary(ReserveResponseSchema, ours)).toEqual(asMessage(o));
      }),
    );
  });

  it("writes ReserveBatchResponse bytes protobuf-es reads, errors included", () => {
    const result = fc.oneof(
      out,
      fc.record({
        code: fc.constantFrom("OUT_OF_STOCK", "NOT_FOUND", "INVALID_ARGUMENT"),
        message: id,
        // Detail keys are names stockd's code gives (lineIndex, productId, ...);
        // protobuf-es, as a plain object would, drops a "__proto__" key.
        details: fc.dictionary(
          fc.stringMatching(/^[a-z][a-zA-Z]{0,9}$/),
          fc.oneof(id, fc.integer()),
        ),
      }),
    );
    fc.assert(
      fc.property(fc.array(result, { maxLength: 6 }), (results) => {
        const mixed = results.map((r) =>
          "holdId" in r ? r : new ApiError(r.code as "NOT_FOUND", r.message, r.details),
        );
        const decoded = fromBinary(ReserveBatchResponseSchema, encodeReserveBatchResponse(mixed));
        expect(decoded.results).toHaveLength(results.length);
        decoded.results.forEach((d, i) => {
          const r = results[i]!;
          if ("holdId" in r) {
            expect(d.result).toEqual({ case: "ok", value: asMessage(r) });
          } else {
            expect(d.result.case).toBe("error");
            const e = d.result.value as { code: string; message: string; details: object };
            expect(e.code).toBe(r.code);
            expect(e.message).toBe(r.message);
            expect(e.details).toEqual(
              Object.fromEntries(Object.entries(r.details).map(([k, v]) => [k, String(v)])),
            );
          }
        });
      }),
    );
  });

  it("answers truncated or garbled bytes as malformed, never by throwing", () => {
    const good = toBinary(
      ReserveRequestSchema,
      create(ReserveRequestSchema, {
        lines: [{ productId: "p", warehouseId: "w", quantity: 1n }],
        requestId: "k",
      }),
    );
    for (let cut = 1; cut < good.length; cut++) {
      const r = decodeReserveRequest(good.subarray(0, cut));
      expect(isMalformed(r) || Array.isArray((r as { lines: unknown[] }).lines)).toBe(true);
    }
    expect(isMalformed(decodeReserveRequest(Uint8Array.from([0x0a, 0x05, 0x0a])))).toBe(true);
    expect(isMalformed(decodeReserveBatchRequest(Uint8Array.from([0x0a, 0xff])))).toBe(true);
    expect(isMalformed(decodeReserveRequest(Uint8Array.from([0x0f])))).toBe(true);
  });
});
