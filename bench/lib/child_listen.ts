import type { Server } from "node:http";

// How the bare HTTP servers of the benchmarks (echo_http.ts, floor_http.ts)
// start and stop as child processes: listen on loopback, print one JSON
// line {"msg":"listening","httpPort":N}, stop on SIGTERM.

export function listenAsChild(server: Server, port: number): void {
  server.listen(port, "127.0.0.1", () => {
    const address = server.address();
    const bound = typeof address === "object" && address !== null ? address.port : 0;
    process.stdout.write(`${JSON.stringify({ msg: "listening", httpPort: bound })}\n`);
  });
  process.once("SIGTERM", () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
