// Reservation requests as each client sends them: protobuf bytes (grpc-js),
// gRPC length-prefixed messages (h2load's body file), JSON (autocannon,
// wrk, the HTTP pool). Built once per run, before measuring.

import { create, toBinary } from "@bufbuild/protobuf";
import {
  ReserveBatchRequestSchema,
  type ReserveRequest,
  ReserveRequestSchema,
} from "../../src/gen/stockd/v1/api_pb.ts";
import type { Sku } from "../lib/gateway_seed.ts";

function reserveRequest(sku: Sku, holdSeconds: number | undefined): ReserveRequest {
  return create(ReserveRequestSchema, {
    lines: [{ ...sku, quantity: 1n }],
    ...(holdSeconds === undefined ? {} : { holdSeconds }),
  });
}

/** ReserveRequest for 1 unit of `sku`; without holdSeconds, stockd's default hold. */
export function reserveProto(sku: Sku, holdSeconds?: number): Uint8Array {
  return toBinary(ReserveRequestSchema, reserveRequest(sku, holdSeconds));
}

export function reserveBatchProto(skus: readonly Sku[]): Uint8Array {
  return toBinary(
    ReserveBatchRequestSchema,
    create(ReserveBatchRequestSchema, {
      requests: skus.map((sku) => reserveRequest(sku, undefined)),
    }),
  );
}

/** POST /v1/reservations body for 1 unit of `sku`. */
export function reserveJson(sku: Sku, holdSeconds?: number): string {
  return JSON.stringify({
    lines: [{ ...sku, quantity: 1 }],
    ...(holdSeconds === undefined ? {} : { holdSeconds }),
  });
}

/** A gRPC message on the wire: 0 (not compressed), uint32 BE length, bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(message.length + 5);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}
