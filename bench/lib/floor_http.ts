// The JSON floor for the HTTP gateway benchmark: a node:http server that does
// per request the least any JSON API with validated input must do, and
// nothing of stockd's own work (no token check, no engine, no journal, no
// metrics). It reads the body as text within stockd's size bound, parses it,
// validates it against stockd's own reservation schema with Ajv (stockd's
// settings), and answers 201 with a reservation-shaped JSON body built by
// JSON.stringify. Measured beside the bare echo (which reads the body and
// answers fixed bytes), it shows how much of the echo's rate any handler
// that parses and validates can keep on this machine.
//
//   node --import tsx bench/lib/floor_http.ts [PORT]
//
// Prints one JSON line {"msg":"listening","httpPort":N}; stops on SIGTERM.

import { createServer, type ServerResponse } from "node:http";
import { Ajv } from "ajv";
import { ajvOptions, reservationSchema } from "../../src/gateway/http.ts";
import { gatewayLimits } from "../../src/gateway/limits.ts";
import { listenAsChild } from "./child_listen.ts";

const validate = new Ajv({ ...ajvOptions }).compile(reservationSchema);

interface Line {
  productId: string;
  warehouseId?: string;
  quantity: number;
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function refuse(res: ServerResponse, status: number, message: string): void {
  send(res, status, { error: { code: "INVALID_ARGUMENT", message, details: {} } });
}

let nextId = 1;

const server = createServer((req, res) => {
  let body = "";
  let size = 0;
  let tooLarge = false;
  req.setEncoding("utf8");
  req.on("data", (chunk: string) => {
    size += chunk.length;
    if (size > gatewayLimits.bodyBytesMax) tooLarge = true;
    else body += chunk;
  });
  req.on("end", () => {
    if (tooLarge) return refuse(res, 413, "body too large");
    if (!(req.headers["content-type"] ?? "").startsWith("application/json")) {
      return refuse(res, 415, "bodies must be application/json");
    }
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (err) {
      return refuse(res, 400, `malformed JSON: ${(err as Error).message}`);
    }
    if (!validate(value)) {
      const first = validate.errors?.[0];
      return refuse(res, 400, `body${first?.instancePath ?? ""} ${first?.message ?? "is invalid"}`);
    }
    const lines = (value as { lines: Line[] }).lines;
    send(res, 201, {
      id: String(nextId++),
      status: "OPEN",
      lines: lines.map((l) => ({
        productId: l.productId,
        warehouseId: l.warehouseId ?? "",
        quantity: l.quantity,
      })),
      expiresAt: new Date(Date.now() + 120_000).toISOString(),
    });
  });
});

listenAsChild(server, Number(process.argv[2] ?? 0));
