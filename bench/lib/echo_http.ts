// The bare HTTP transport for the gateway benchmark: a node:http server that
// reads the request body and answers a small JSON 201, nothing else. What
// stockd's HTTP gateway does per request is measured against it.
//
//   node --import tsx bench/lib/echo_http.ts [PORT]
//
// Prints one JSON line {"msg":"listening","httpPort":N}; stops on SIGTERM.

import { createServer } from "node:http";
import { listenAsChild } from "./child_listen.ts";

const answer = Buffer.from('{"id":"echo","status":"OK"}');

const server = createServer((req, res) => {
  // The body is read to its end, as a real handler must before answering.
  req.on("data", () => {});
  req.on("end", () => {
    res.writeHead(201, {
      "content-type": "application/json; charset=utf-8",
      "content-length": answer.length,
    });
    res.end(answer);
  });
});

listenAsChild(server, Number(process.argv[2] ?? 0));
